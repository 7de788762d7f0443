# NATS server image for the fleet example (compose.fleet.yaml): Debian 12's
# nats-server package (2.9) on the same base as the node image, so no image
# has to come from Docker Hub.  Build context: the repository root.
#
#   docker build -f docker/nats.Dockerfile -t softadastra-nats .
#   docker run -d -p 127.0.0.1:4222:4222 -v nats-data:/data softadastra-nats
#
# Alone it is one JetStream server (docker/nats.conf).  A cluster passes
# the cluster flags on the command line, after the image name (compose.fleet.yaml
# does):  --server_name nats-1 --cluster_name softadastra
#         --cluster nats://0.0.0.0:6222 --routes nats-route://nats-1:6222,...
# Only classic-builder syntax, like docker/Dockerfile; see docker/README.md.

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# The package makes the system user "nats"; it gets a fixed id here
# (10002), so volumes and runAsNonRoot see a known uid.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupmod --gid 10002 nats \
 && usermod --uid 10002 --gid 10002 nats \
 && mkdir -p /data \
 && chown nats:nats /data \
 && chmod 0750 /data \
 && nats-server --version
COPY docker/nats.conf /etc/nats/nats.conf
COPY docker/nats-healthcheck.sh /usr/local/bin/nats-healthcheck

# The JetStream store in the volume /data; clients on 4222, routes between
# servers on 6222, monitoring (/healthz, /jsz, /routez) on 8222.
VOLUME ["/data"]
WORKDIR /data
EXPOSE 4222 6222 8222
USER 10002:10002

# nats-server exits 0 on SIGINT (1 on SIGTERM), after closing its clients
# and routes and flushing its JetStream files.
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
  CMD ["nats-healthcheck"]

ENTRYPOINT ["nats-server", "--config", "/etc/nats/nats.conf"]
CMD []
