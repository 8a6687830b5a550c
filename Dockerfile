# CUDA inference image for gtws-dl.
#   docker build -t gtws-dl .
#   docker run --gpus all -v $PWD/data:/data -v $PWD/outputs:/outputs gtws-dl \
#       ckpt_path=/outputs/train/csr/checkpoints/best.ckpt data=files data.era5_dir=/data/era5 ... paths.output_dir=/outputs
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GTWS_DL_CACHE=/opt/gtws-dl/cache

WORKDIR /opt/gtws-dl
COPY pyproject.toml README.md ./
COPY gtws_dl ./gtws_dl
COPY train.py infer.py ./

# torch comes with the base image (CUDA build); the package's other dependencies as in the Makefile's install
RUN pip install --no-cache-dir -e . \
    && groupadd --gid 1000 gtws \
    && useradd --create-home --uid 1000 --gid 1000 gtws \
    && mkdir -p /opt/gtws-dl/cache /outputs \
    && python -c "from gtws_dl.grid import Grid; from gtws_dl.landmask import land_fraction; [land_fraction(Grid(r)) for r in (0.25, 0.5, 1.0, 2.0)]" \
    && chown -R gtws:gtws /opt/gtws-dl /outputs

USER 1000:1000
WORKDIR /outputs
ENTRYPOINT ["python", "/opt/gtws-dl/infer.py"]
CMD ["--help"]
