"""The /status micro-cache of the boot cluster as the NAT lab runs it: the file Kubernetes ships.

``deploy/kubernetes/nginx/status-cache.conf`` is nginx's http-context part
(the cache zone and the server on port 8080 that caches ``GET /status`` for a
second); it names an upstream ``autonat_boot`` that each deployment defines
next to it. :func:`nginx_conf` writes the lab's main configuration around
it: temporary paths in the lab's directory, the upstream (the boot nodes'
HTTP APIs in their namespaces) and an ``include`` of the shipped file - not a
copy, so the lab always tests what the manifests deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

STATUS_CACHE_CONF = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "nginx" \
    / "status-cache.conf"
"""The nginx configuration the Kubernetes ConfigMap is generated from."""
STATUS_CACHE_PORT = 8080
"""The port ``status-cache.conf`` listens on."""


def nginx_conf(prefix: Path, upstreams: Sequence[str]) -> str:
    """A main nginx.conf for prefix ``prefix`` that runs :data:`STATUS_CACHE_CONF` in front of
    ``upstreams`` (``ip:port`` of the boot nodes' HTTP APIs)."""
    if not upstreams:
        raise ValueError("nginx needs at least one upstream boot node")
    servers = "\n".join(f"        server {up} max_fails=1 fail_timeout=5s;" for up in upstreams)
    return f"""\
worker_processes 1;
user root root;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    log_format cache '$remote_addr "$request" $status $upstream_cache_status '
                     'upstream=$upstream_addr';
    access_log {prefix}/nginx-access.log cache;
    log_subrequest on;  # the cache's background refreshes are subrequests
    client_body_temp_path {prefix}/nginx-body;
    proxy_temp_path {prefix}/nginx-proxy;
    fastcgi_temp_path {prefix}/nginx-fastcgi;
    uwsgi_temp_path {prefix}/nginx-uwsgi;
    scgi_temp_path {prefix}/nginx-scgi;
    upstream autonat_boot {{
{servers}
    }}
    include {STATUS_CACHE_CONF};
}}
"""
