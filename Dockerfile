# One image for every Pressroom process; docker-compose.yml picks the command per service (same as the Procfile).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The code, listed explicitly so a local .venv/ or var/ never lands in the image.
COPY cli.py Procfile pyproject.toml ./
COPY .streamlit/ .streamlit/
COPY core/ core/
COPY db/ db/
COPY adapters/ adapters/
COPY workers/ workers/
COPY api/ api/
COPY app/ app/
COPY pages/ pages/
COPY sims/ sims/
# Bytecode at build: PYTHONDONTWRITEBYTECODE keeps processes from writing it, and a worker compiling ~100 modules
# at every start costs it ~0.2 s of CPU (python -m workers also compiles what is missing, where it may write).
RUN python -m compileall -q core db adapters workers api app pages sims

RUN useradd --create-home --uid 10001 pressroom \
    && mkdir -p /app/var/objects \
    && chown -R pressroom:pressroom /app/var
USER pressroom

EXPOSE 8000 8501
CMD ["python", "-m", "cli", "--help"]
