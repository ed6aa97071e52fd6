FROM node:20-bookworm-slim
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip NODE_ENV=production HOST=0.0.0.0 DATA_DIR=/data
# Debian's PocketSphinx and its US-English model: the embedded recogniser for open speech (STT_PROVIDER=auto finds them).
RUN apt-get update && apt-get install -y --no-install-recommends libpocketsphinx3 pocketsphinx-en-us && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY machines ./machines
COPY src ./src
EXPOSE 3334
VOLUME /data
CMD ["node", "--import", "tsx", "src/main.ts"]
