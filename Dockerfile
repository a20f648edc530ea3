# streammatte on the CPU: `streammatte serve` on port 8080, models in the /models volume.
#
#   make docker                                        # → image streammatte:cpu
#   docker run -p 8080:8080 -v models:/models streammatte:cpu
#
# It prints the URL to open, with the token it generated (every address but loopback needs
# one; pass -e STREAMMATTE_TOKEN=… to choose it). Other commands run the same way:
#   docker run -v "$PWD:/work" -v models:/models streammatte:cpu video /work/in.mp4 -o /work/out.mp4
#
# `make docker` builds the wheels on the host (build/docker/wheels) and this file installs them
# with no package index: the build needs neither network nor compiler. The base is Debian
# bookworm with Python 3.11, the Python the wheels were built for.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
# `make docker` removes this stage's image, and a build the new one replaced, when it is done
LABEL streammatte.build=cpu
ARG EXTRAS=server,webrtc,mediapipe
COPY build/docker/wheels /tmp/wheels
RUN python3 -m venv /opt/streammatte \
 && /opt/streammatte/bin/python -m pip install --no-cache-dir --no-index \
      --find-links /tmp/wheels "streammatte[${EXTRAS}]"

FROM ${BASE_IMAGE}
LABEL streammatte.build=cpu
COPY --from=install /opt/streammatte /opt/streammatte
# an unprivileged user; a new named volume takes /models' owner from the image
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin streammatte \
 && mkdir /models && chown streammatte:streammatte /models
ENV PATH=/opt/streammatte/bin:$PATH \
    STREAMMATTE_MODELS_DIR=/models \
    PYTHONUNBUFFERED=1
VOLUME /models
USER streammatte
WORKDIR /home/streammatte
EXPOSE 8080
ENTRYPOINT ["streammatte"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
