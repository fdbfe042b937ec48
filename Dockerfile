# The service image: `active-users consume`, `serve`, `produce`, `replay` and `token` (see compose.yaml).
# Two stages: the first builds the project's wheel from the sources (as tests/test_package.py does), the second
# installs that wheel with the tested dependency versions (constraints/tested.txt), so the image runs the
# artifact the tests install, and two builds of one commit get the same dependencies.

FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY constraints/tested.txt constraints/
RUN pip install -c constraints/tested.txt build
COPY pyproject.toml README.md ./
COPY activeusers/ activeusers/
COPY consumer/ consumer/
COPY api/ api/
RUN python -m build --wheel --outdir /dist .


FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies only, at the tested versions: this layer is rebuilt when pyproject.toml or the constraints change,
# not when the code does.
COPY pyproject.toml constraints/tested.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c tested.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the wheel of the first stage, its dependencies already in place (pip check proves they fit).
COPY --from=build /dist/ /tmp/dist/
RUN pip install -c tested.txt /tmp/dist/*.whl \
    && pip check \
    && rm -rf /tmp/dist

USER app

EXPOSE 8080 9464
CMD ["active-users", "serve"]
