# Builds Caddy with OpenWebUI Monitor through xcaddy, the way third-party
# Caddy plugins are usually built:
#   docker build -f xcaddy.Dockerfile -t owmon .
# The binary has the same Caddy modules as `go build ./cmd/owmon`
# (cmd/owmon's TestXcaddyDockerfileBuildsOwmon runs these steps without
# Docker and compares `list-modules`). Every tag is pinned: Go as go.mod
# needs it, xcaddy, and Caddy as go.mod requires it (CADDY_VERSION).
FROM golang:1.26.8-alpine AS builder
RUN go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
ENV CADDY_VERSION=v2.11.9
COPY . /src/owmon
RUN xcaddy build --output /usr/bin/caddy --with github.com/openwebui-monitor/owmon=/src/owmon

FROM caddy:2.11.9-alpine
# cmd/owmon embeds the time zone database (time/tzdata); xcaddy's main does
# not, so the image carries it instead.
RUN apk add --no-cache tzdata
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY Caddyfile /etc/caddy/Caddyfile
EXPOSE 7878
