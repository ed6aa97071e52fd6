/**
 * The concurrency cap. Checking for room and taking it must be one step: a check followed by an `await` and then the
 * take lets every request that arrives in between through (12 concurrent POSTs once got 5 calls past a cap of 3).
 * The in-memory implementation does both synchronously inside `admit`; a shared one (Redis) does both in one script.
 */

export type AdmissionKind = "inbound" | "outbound" | "browser" | "restored";

export interface Ticket {
  readonly id: string;
  readonly kind: AdmissionKind;
}

export interface Busy {
  busy: true;
  /** How many slots are taken, and the cap, for the refusal's message. */
  inUse: number;
  max: number;
  /** Seconds after which trying again is reasonable (`Retry-After`). */
  retryAfterS: number;
}

export interface Admission {
  /** Take a slot for `id` if one is free. Check and take are one step. Admitting an id that holds a slot is a no-op. */
  admit(id: string, kind: AdmissionKind): Promise<Ticket | Busy>;
  /** Give a slot back; releasing twice, or a ticket that was never admitted, does nothing. */
  release(ticket: Ticket): Promise<void>;
  /** Re-key a ticket (an outbound call learns its id from the carrier only after its slot was taken). */
  rename(ticket: Ticket, id: string): Promise<Ticket>;
  /** Slots taken now. */
  readonly inUse: number;
}

export const isBusy = (t: Ticket | Busy): t is Busy => "busy" in t;

/** Slots of this process. */
export class MemoryAdmission implements Admission {
  private readonly held = new Map<string, Ticket>();

  constructor(
    private readonly max: () => number,
    private readonly retryAfterS = 5,
  ) {}

  get inUse(): number {
    return this.held.size;
  }

  async admit(id: string, kind: AdmissionKind): Promise<Ticket | Busy> {
    return this.admitNow(id, kind);
  }

  /** The synchronous core: nothing can interleave between the check and the take. */
  admitNow(id: string, kind: AdmissionKind): Ticket | Busy {
    const existing = this.held.get(id);
    if (existing) return existing;
    const max = this.max();
    if (this.held.size >= max) return { busy: true, inUse: this.held.size, max, retryAfterS: this.retryAfterS };
    const ticket = { id, kind };
    this.held.set(id, ticket);
    return ticket;
  }

  async release(ticket: Ticket): Promise<void> {
    if (this.held.get(ticket.id) === ticket) this.held.delete(ticket.id);
  }

  async rename(ticket: Ticket, id: string): Promise<Ticket> {
    if (this.held.get(ticket.id) !== ticket) throw new Error(`ticket ${ticket.id} is not held`);
    this.held.delete(ticket.id);
    const renamed = { id, kind: ticket.kind };
    this.held.set(id, renamed);
    return renamed;
  }
}
