"""The hub: where the homes of a fleet meet, an S3 prefix or a shared folder.

Agent hosts keep their own home (selection never waits on the network) and ship their logs here;
the learner ingests them, keeps its lake here and publishes rule sets here; hosts pull them back.
Every key under the hub is built in this module:

* ``hosts/<host>.json``: each home tied to the hub, written by ``routing init --hub``;
* ``inbox/<host>/<table>/<segment>.parquet``: sealed segments a host shipped. A segment's name
  says which rows it holds, and a name is never written with other rows, so shipping again after
  a kill writes the same object (at-least-once delivery, exactly-once effect);
* the learner's lake below ``lake/`` (:data:`routing_runtime.home.LAKE_DIR`), laid out as a local
  lake: :class:`routing_pipelines.lake.Lake` builds the keys below it;
* ``rules/v<N>.json``: published rule set ``N`` (header and rows), and ``rules/current.json``:
  ``{"version": N}``, written last, so a reader sees a whole version or the one before.

An object is written whole or not at all: on S3 a PUT is atomic; in a shared folder the file is
written under a hidden name and renamed. No link is followed in a shared folder.

S3 needs the ``[hub]`` extra (pyarrow); credentials and endpoint come from the standard variables
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION`` (``AWS_ALLOW_HTTP=true`` for a plain-http endpoint) and are never stored.

>>> Hub.parse("s3://fleet-bucket/routing/prod/").url
's3://fleet-bucket/routing/prod'
>>> Hub.parse("/srv/hub").url
'/srv/hub'
>>> Hub.parse("hub")
Traceback (most recent call last):
...
ValueError: --hub='hub' is neither s3://bucket/prefix nor an absolute path: give e.g. s3://my-bucket/routing or /mnt/shared/routing-hub
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections import namedtuple

from routing_runtime import safe_fs
from routing_runtime.home import LAKE_DIR

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["HUB_EXTRA_HINT", "LAKE_DIR", "Hub", "HubError", "HubObject", "inbox_key", "rule_set_key"]

HUB_EXTRA_HINT = "an s3:// hub needs the [hub] extra: pip install 'routing-runtime[hub]'"
HOSTS = "hosts"
INBOX = "inbox"
RULES = "rules"
CURRENT_RULES = f"{RULES}/current.json"

HubObject = namedtuple("HubObject", "key size")


class HubError(RuntimeError):
    """The hub cannot be reached or refuses us; the message says which hub and what to check."""


def inbox_key(host: str, table: str, segment: str) -> str:
    """Where ``host`` ships ``segment`` of ``table``.

    >>> inbox_key("web-1", "routing_decisions", "000001-000500")
    'inbox/web-1/routing_decisions/000001-000500.parquet'
    """
    return f"{INBOX}/{safe_fs.safe_name(host, 120)}/{table}/{safe_fs.safe_name(segment, 120)}.parquet"


def rule_set_key(version: int) -> str:
    """The object of published rule set ``version`` (zero-padded: listed in order).

    >>> rule_set_key(12)
    'rules/v000000000012.json'
    """
    return f"{RULES}/v{int(version):012d}.json"


class Hub:
    """One hub, by URL: ``s3://bucket/prefix`` or an absolute path. Keys are ``/``-separated
    paths below it (see the module's layout)."""

    def __init__(self, url: str) -> None:
        self.url = url

    @staticmethod
    def parse(url: str) -> Hub:
        """Check ``url``'s form (nothing is contacted); return the hub it names."""
        text = str(url).strip()
        if text.startswith("s3://"):
            bucket, _, prefix = text[len("s3://"):].partition("/")
            prefix = prefix.strip("/")
            if not bucket or "/" in bucket or any(p in (".", "..") for p in prefix.split("/")):
                raise ValueError(f"--hub={url!r} is not s3://bucket/prefix: give e.g. s3://my-bucket/routing")
            return _S3Hub(f"s3://{bucket}" + (f"/{prefix}" if prefix else ""), bucket, prefix)
        if os.path.isabs(text):
            return _FolderHub(os.path.normpath(text))
        raise ValueError(
            f"--hub={url!r} is neither s3://bucket/prefix nor an absolute path:"
            " give e.g. s3://my-bucket/routing or /mnt/shared/routing-hub"
        )

    # Every backend implements these five; keys are checked by _check_key first.
    def put(self, key: str, data: bytes) -> None:
        """Write ``key`` whole (replacing it), or not at all."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        """The content of ``key``; :class:`FileNotFoundError` when it does not exist."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[HubObject]:
        """Every object below ``prefix`` (recursively), sorted by key; hidden names left out."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when it does not exist)."""
        raise NotImplementedError

    def uri(self, key: str) -> str:
        """What Polars reads ``key`` by (with :attr:`storage_options`)."""
        raise NotImplementedError

    @property
    def storage_options(self) -> dict[str, str] | None:
        """Polars' ``storage_options`` for :meth:`uri` (None for a folder)."""
        return None

    # ------------------------------------------------------------------ helpers over the five

    def get_json(self, key: str) -> dict | None:
        """``key`` parsed as a JSON object; None when it does not exist."""
        try:
            document = json.loads(self.get(key))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise HubError(f"{self.url}/{key} is not valid JSON ({exc}): was it written by another program?") from None
        if not isinstance(document, dict):
            raise HubError(f"{self.url}/{key} is not a JSON object: was it written by another program?")
        return document

    def put_json(self, key: str, document: Mapping) -> None:
        self.put(key, json.dumps(dict(document), sort_keys=True, default=str).encode())

    def register_host(self, host: str, description: Mapping) -> None:
        """Write ``hosts/<host>.json`` and read it back: proves the hub takes our writes."""
        key = f"{HOSTS}/{safe_fs.safe_name(host, 120)}.json"
        self.put_json(key, description)
        if self.get_json(key) is None:
            raise HubError(f"{self.url}: wrote {key} but cannot read it back: check the hub's read permission")

    def __repr__(self) -> str:
        return f"Hub({self.url!r})"


def _check_key(key: str, *, root_ok: bool = False) -> list[str]:
    if root_ok and not key:
        return []
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"hub key {key!r} is not a relative path of named parts")
    return parts


class _FolderHub(Hub):
    """A hub in a folder every home can reach (a shared filesystem). Links are never followed."""

    def __init__(self, url: str) -> None:
        from pathlib import Path

        super().__init__(url)
        self.root: Path = Path(url)

    def _root(self) -> Path:
        try:
            info = os.lstat(self.root)
        except FileNotFoundError:
            raise HubError(f"hub folder {self.url} does not exist: create it (on the shared filesystem) or fix --hub") from None
        if not stat.S_ISDIR(info.st_mode):
            raise HubError(f"hub {self.url} is not a folder (a link or a file): give the real folder")
        return self.root

    def put(self, key: str, data: bytes) -> None:
        *folders, name = _check_key(key)
        parent = safe_fs.ensure_dir(self._root(), *folders)
        tmp = parent / f".tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, parent / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        path = self._root().joinpath(*_check_key(key))
        try:
            return safe_fs.read_bytes(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}/{key} does not exist") from None

    def list(self, prefix: str) -> list[HubObject]:
        root = self._root()
        base = root.joinpath(*_check_key(prefix.strip("/"), root_ok=True))
        found = []
        for folder, dirs, files in os.walk(base, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d)))
            for name in files:
                path = os.path.join(folder, name)
                if name.startswith(".") or os.path.islink(path):
                    continue
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    found.append(HubObject(os.path.relpath(path, root).replace(os.sep, "/"), info.st_size))
        return sorted(found)

    def delete(self, key: str) -> None:
        path = self._root().joinpath(*_check_key(key))
        if safe_fs.is_regular_file(path):
            path.unlink()

    def uri(self, key: str) -> str:
        return str(self.root.joinpath(*_check_key(key)))


class _S3Hub(Hub):
    """A hub under an S3 prefix (any S3-compatible server), through pyarrow's S3 client."""

    def __init__(self, url: str, bucket: str, prefix: str, env: Mapping[str, str] | None = None) -> None:
        super().__init__(url)
        self.bucket = bucket
        self.prefix = prefix
        self._env = env
        self._client = None

    def _settings(self) -> dict[str, str]:
        env = os.environ if self._env is None else self._env
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        allow_http = env.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true", "yes")
        if endpoint.startswith("http://") and not allow_http:
            raise HubError(
                f"AWS_ENDPOINT_URL={endpoint} is plain http: set AWS_ALLOW_HTTP=true to use it (or an https:// endpoint)"
            )
        settings = {"endpoint": endpoint, "region": region, "allow_http": "true" if allow_http else "false"}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if env.get(name):
                settings[name] = env[name]
        return settings

    def _fs(self):
        if self._client is None:
            try:
                from pyarrow import fs
            except ImportError:
                raise HubError(HUB_EXTRA_HINT) from None
            settings = self._settings()
            endpoint = settings["endpoint"]
            self._client = fs.S3FileSystem(
                access_key=settings.get("AWS_ACCESS_KEY_ID"), secret_key=settings.get("AWS_SECRET_ACCESS_KEY"),
                session_token=settings.get("AWS_SESSION_TOKEN"), region=settings["region"],
                endpoint_override=endpoint.split("://", 1)[-1] or None,
                scheme="http" if endpoint.startswith("http://") else "https",
                connect_timeout=5, request_timeout=30,
                retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=3),
            )
        return self._client

    def _path(self, key: str, *, root_ok: bool = False) -> str:
        return "/".join([self.bucket, *([self.prefix] if self.prefix else []), *_check_key(key, root_ok=root_ok)])

    def _fail(self, exc: OSError, what: str) -> HubError:
        message = str(exc)
        if "NETWORK_CONNECTION" in message or "Could not connect" in message or "curlCode" in message:
            why = f"cannot connect to {self._settings()['endpoint'] or 'AWS S3'}: is it up? (AWS_ENDPOINT_URL)"
        elif any(code in message for code in ("SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "ACCESS_DENIED", "AccessDenied", "403")):
            why = "refused our credentials or permissions: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy"
        elif "NO_SUCH_BUCKET" in message or "NoSuchBucket" in message:
            why = f"bucket {self.bucket!r} does not exist: create it first"
        else:
            why = message.splitlines()[0][:300]
        return HubError(f"hub {self.url}: {what}: {why}")

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            with self._fs().open_output_stream(path, metadata={}) as stream:
                stream.write(data)
        except OSError as exc:
            raise self._fail(exc, f"writing {key}") from None

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with self._fs().open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}/{key} does not exist") from None
        except OSError as exc:
            raise self._fail(exc, f"reading {key}") from None

    def list(self, prefix: str) -> list[HubObject]:
        from pyarrow import fs

        base = self._path(prefix.strip("/"), root_ok=True)
        root = "/".join([self.bucket, *([self.prefix] if self.prefix else [])]) + "/"
        try:
            infos = self._fs().get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise self._fail(exc, f"listing {prefix}") from None
        found = []
        for info in infos:
            if info.type != fs.FileType.File or not info.path.startswith(root):
                continue
            key = info.path[len(root):]
            if any(part.startswith(".") for part in key.split("/")):
                continue
            found.append(HubObject(key, info.size))
        return sorted(found)

    def delete(self, key: str) -> None:
        try:
            self._fs().delete_file(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail(exc, f"deleting {key}") from None

    def uri(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    @property
    def storage_options(self) -> dict[str, str]:
        settings = self._settings()
        options = {"aws_region": settings["region"], "aws_allow_http": settings["allow_http"]}
        if settings["endpoint"]:
            options["aws_endpoint_url"] = settings["endpoint"]
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if name in settings:
                options[name.lower()] = settings[name]
        return options
