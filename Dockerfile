FROM node:20-bookworm-slim
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip NODE_ENV=production HOST=0.0.0.0 DATA_DIR=/data
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY machines ./machines
COPY src ./src
EXPOSE 3334
VOLUME /data
CMD ["node", "--import", "tsx", "src/main.ts"]
