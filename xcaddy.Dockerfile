# Builds Caddy with OpenWebUI Monitor through xcaddy, the way third-party
# Caddy plugins are usually built:
#   docker build -f xcaddy.Dockerfile -t owmon .
FROM caddy:2.11-builder AS builder
COPY . /src/owmon
RUN xcaddy build --output /usr/bin/caddy --with github.com/openwebui-monitor/owmon=/src/owmon

FROM caddy:2.11
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY Caddyfile /etc/caddy/Caddyfile
EXPOSE 7878
