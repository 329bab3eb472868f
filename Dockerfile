# flowbot in a container: a static binary on a distroless base, run as a
# non-root user. The bot directory and the data directory are volumes:
#
#   docker build -t flowbot .
#   docker run -p 8080:8080 -v "$PWD/examples/clinic:/bot:ro" -v flowbot-data:/data \
#     -e WHATSAPP_TOKEN -e WHATSAPP_APP_SECRET -e WHATSAPP_VERIFY_TOKEN \
#     -e WHATSAPP_PHONE_NUMBER_ID -e FLOWBOT_API_TOKEN flowbot
#
# docs/operations.md says what to keep off the public route and what to
# back up.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/flowbot ./cmd/flowbot && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flowbot /flowbot
# The data directory belongs to the user flowbot runs as (a named volume
# takes its owner from here).
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME ["/bot", "/data"]
EXPOSE 8080
ENTRYPOINT ["/flowbot", "serve", "/bot", "--addr", ":8080", "--data", "/data", "--log-format", "json", "--shutdown-timeout", "30s"]
