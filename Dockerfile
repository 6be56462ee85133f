# The p2pfl node as a container: CPU torch, run as the non-root user p2pfl (uid 10001).
#   /data   the hospital's files, mounted read-only: node.toml, plan.toml, roster.toml, the key
#           (mode 0600, owned by uid 10001), its table
#   /state  the node's state folder (node.toml: state_dir = "/state"), a volume that outlives
#           the container
# No secret is in the image: the key is mounted, passphrases and passwords come as -e variables.
# Build: docker build -t p2pfl .   Run: see "Running in production" in README.md.

FROM python:3.11-slim AS build
# fastecdsa (a libp2p dependency) has no wheel: it is compiled against GMP
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libgmp-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/p2pfl/.venv
ENV PATH=/opt/p2pfl/.venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, the CPU build: the package's own torch>=2.3 is then satisfied and pulls no CUDA
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY p2pfl ./p2pfl
RUN pip install .

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgmp10 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin p2pfl \
    && mkdir -p /data /state \
    && chown p2pfl:p2pfl /state
COPY --from=build /opt/p2pfl/.venv /opt/p2pfl/.venv
ENV PATH=/opt/p2pfl/.venv/bin:$PATH PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib
USER p2pfl
WORKDIR /state
VOLUME ["/data", "/state"]
# the node's listen port (node.toml: listen = "/ip4/0.0.0.0/tcp/9001")
EXPOSE 9001
ENTRYPOINT ["p2pfl"]
CMD ["node", "--config", "/data/node.toml"]
