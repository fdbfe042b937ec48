# The service image: `active-users consume`, `serve`, `produce`, `replay` and `token` (see compose.yaml).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies only: this layer is rebuilt when pyproject.toml changes, not when the code does.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code.
COPY README.md ./
COPY activeusers/ activeusers/
COPY consumer/ consumer/
COPY api/ api/
RUN pip install --no-deps . && rm -rf build *.egg-info

USER app

EXPOSE 8080 9464
CMD ["active-users", "serve"]
