"""Icechunk repositories by path or URL: storage, virtual chunk containers, credentials."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import WriterError
from virtualizarr.manifests import ManifestArray
from virtualizarr.writers._icechunk_plan import location

if TYPE_CHECKING:
    import xarray as xr
    from icechunk import Repository, Storage

_REMOTE_SCHEMES = ("s3", "gs", "gcs", "http", "https")


def referenced_urls(ds: xr.Dataset) -> set[str]:
    urls: set[str] = set()
    for var in ds.variables.values():
        if isinstance(var.data, ManifestArray):
            urls.update(var.data.manifest.used_paths())
    return urls


def storage_for(url: str) -> Storage:
    import icechunk

    scheme, sep, rest = url.partition("://")
    if not sep or scheme == "file":
        path = rest if sep else url
        return icechunk.local_filesystem_storage(os.path.abspath(os.path.expanduser(path)))
    bucket, _, key = rest.partition("/")
    if scheme == "s3":
        creds, endpoint = _aws_env_creds(), os.environ.get("AWS_ENDPOINT_URL")
        return icechunk.s3_storage(
            bucket=bucket,
            prefix=key or None,
            region=_aws_region(),
            endpoint_url=endpoint,  # S3-compatible servers (MinIO, moto)
            allow_http=bool(endpoint),
            force_path_style=bool(endpoint),
            anonymous=not creds,
            from_env=creds or None,
        )
    if scheme in ("gs", "gcs"):
        return icechunk.gcs_storage(bucket=bucket, prefix=key or None, from_env=True)
    raise WriterError(
        f"Cannot open an Icechunk repository at {url!r}: use a local path, s3:// or gs://."
    )


def _aws_env_creds() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID"))


def _aws_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _container_prefix(url: str) -> str:
    """The prefix of the container a referenced file needs: its directory, or its bucket."""
    scheme, sep, rest = url.partition("://")
    if scheme == "file":
        return "file://" + rest.rsplit("/", 1)[0] + "/"
    if not sep or scheme not in _REMOTE_SCHEMES:
        raise WriterError(
            f"Cannot register a virtual chunk container for {url!r}: Icechunk reads virtual "
            f"chunks from {', '.join(('file', *_REMOTE_SCHEMES))} URLs only."
        )
    return f"{scheme}://{rest.split('/', 1)[0]}/"


def _container(prefix: str) -> Any:
    import icechunk

    scheme, _, rest = prefix.partition("://")
    store: Any  # one of icechunk's object store configurations
    if scheme == "file":
        store = icechunk.local_filesystem_store(rest)
    elif scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL")  # S3-compatible servers (MinIO, moto)
        store = icechunk.s3_store(
            region=_aws_region(),
            endpoint_url=endpoint,
            anonymous=not _aws_env_creds(),
            s3_compatible=bool(endpoint),
            allow_http=bool(endpoint),
            force_path_style=bool(endpoint),
        )
    elif scheme in ("gs", "gcs"):
        store = icechunk.gcs_store()
    elif scheme in ("http", "https"):
        store = icechunk.http_store()
    else:
        raise WriterError(
            f"No Icechunk virtual chunk container can serve {prefix!r} ({scheme}:// URLs)."
        )
    return icechunk.VirtualChunkContainer(prefix, store)


def credentials_for(prefix: str) -> Any:
    import icechunk

    scheme = prefix.partition("://")[0]
    if scheme == "file":
        return icechunk.credentials.LocalFileSystemAccess
    if scheme in ("http", "https"):
        return icechunk.credentials.HttpAccess
    if scheme == "s3":
        return (
            icechunk.s3_from_env_credentials()
            if _aws_env_creds()
            else icechunk.s3_anonymous_credentials()
        )
    return icechunk.gcs_from_env_credentials()


def _prefix_forms(prefix: str) -> list[str]:
    # Icechunk matches written locations against the percent-encoded prefix but reads
    # through the plain one, so a prefix with spaces or non-ASCII characters needs both.
    return list(dict.fromkeys([prefix, location(prefix)]))


def repository_for_write(target: str, urls: set[str]) -> tuple[Repository, bool]:
    """Open or create the repository at ``target`` with containers covering ``urls``.

    Also returns whether containers were added to an existing repository's config, which the
    caller saves once the write is committed (a new repository is created with them).
    """
    import icechunk

    storage = storage_for(target)
    exists = icechunk.Repository.exists(storage)
    config = (
        icechunk.Repository.fetch_config(storage) if exists else None
    ) or icechunk.RepositoryConfig.default()
    have = [c.url_prefix for c in (config.virtual_chunk_containers or {}).values()]
    needed = sorted({_container_prefix(u) for u in urls}, key=len)
    added = False
    for prefix in needed:
        if any(location(prefix).startswith(p) for p in have):
            continue
        for form in _prefix_forms(prefix):
            config.set_virtual_chunk_container(_container(form))
            have.append(form)
        added = True
    auth = icechunk.containers_credentials({p: credentials_for(p) for p in have})
    if exists:
        repo = icechunk.Repository.open(storage, config=config, authorize_virtual_chunk_access=auth)
        return repo, added
    return icechunk.Repository.create(
        storage, config=config, authorize_virtual_chunk_access=auth
    ), False
