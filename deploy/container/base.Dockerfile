# The base image that base-image.sh builds on Debian's root file system (see there).
ARG ROOTFS
FROM ${ROOTFS}
ARG UV_VERSION
ARG VARIANT

ENV LANG=C.UTF-8 LC_ALL=C.UTF-8
# pip and uv trust the CA bundle of the machine that built the image: where TLS is inspected on the
# way to the package index, they fail without it. uv reads SSL_CERT_FILE, pip PIP_CERT.
COPY machine-ca.crt /usr/local/share/nextword/machine-ca.crt
ENV SSL_CERT_FILE=/usr/local/share/nextword/machine-ca.crt PIP_CERT=/usr/local/share/nextword/machine-ca.crt

# uv, which BentoML's Dockerfile installs packages with (it would pip install it, and Debian's
# Python has no pip outside a virtual environment).
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet --no-cache-dir "uv==${UV_VERSION}" \
    && ln -s /opt/uv/bin/uv /usr/local/bin/uv

# A CPU image installs torch's CPU wheel from here (PyPI's Linux wheel is the CUDA build, and pulls
# the CUDA libraries); a CUDA image has no wheel here and takes PyPI's.
COPY wheels/ /opt/nextword/wheels/
ENV UV_FIND_LINKS=/opt/nextword/wheels
LABEL org.opencontainers.image.description="Debian bookworm, Python 3.11 and uv: a base for nextword's Bento (${VARIANT})"
