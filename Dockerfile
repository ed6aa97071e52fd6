# The service as README.md describes it (`npm start`), with the `parley` CLI beside it:
#   docker compose up                                # the fleet: see docker-compose.yml
#   docker compose -f docker-compose.single.yml up   # one instance
#   docker compose -f docker-compose.single.yml exec parley node bin/parley.js calls
# Nothing is fetched at run time: the Silero model, the recogniser's model and eSpeak ship inside npm packages.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 DATA_DIR=/data
# Debian's PocketSphinx and its US-English model: the embedded recogniser for open speech (STT_PROVIDER=auto finds them).
RUN apt-get update && apt-get install -y --no-install-recommends libpocketsphinx3 pocketsphinx-en-us && rm -rf /var/lib/apt/lists/*
# .npmrc keeps onnxruntime-node's install script from downloading GPU binaries (the CPU build is in the package).
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY machines ./machines
COPY src ./src
COPY bin ./bin
# Call records belong to the unprivileged user the service runs as.
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 3334
VOLUME /data
CMD ["node", "--import", "tsx", "src/main.ts"]
