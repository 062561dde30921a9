"""schemathesis hooks for scripts/api_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

`GET /api/apps/{name}/manifests?format=yaml` answers the `aiops render` stream: several YAML
documents separated by `---`, which RFC 9512 allows under `application/yaml`. schemathesis's
built-in YAML deserializer reads one document (`yaml.load`) and fails on a stream with an
internal traceback, so the response could not be checked at all. This reads every document;
the OpenAPI document gives that response no schema beyond its media type.

`not_a_server_error_but_unconfigured` is schemathesis's `not_a_server_error` less one answer:
the fuzzed daemon has no Kubernetes cluster, so `POST /api/apps/{name}/deploy` answers its
documented 503 "this daemon runs no deployments" for every valid request. Any other 5xx of that
route, and every 5xx of every other route, still fails the run.
"""

import schemathesis
import yaml

# The one server error the fuzzed daemon gives by design (see the module documentation).
UNCONFIGURED = ("POST", "/api/apps/{name}/deploy", 503, "this daemon runs no deployments")

# Every YAML media type schemathesis knows: its lookup takes the first registered type of the
# YAML family, so replacing only `application/yaml` would leave the built-in one in front.
YAML_TYPES = ("text/yaml", "text/x-yaml", "application/x-yaml", "text/vnd.yaml", "application/yaml")


@schemathesis.deserializer(*YAML_TYPES)
def yaml_stream(_ctx, response):
    """All documents of a YAML stream, as a list."""
    return list(yaml.safe_load_all(response.content.decode(response.encoding or "utf-8")))


@schemathesis.check
def not_a_server_error_but_unconfigured(ctx, response, case):
    """No 5xx, except a deployment asked of a daemon that runs none (it has no cluster here)."""
    if response.status_code < 500:
        return None
    method, path, status, words = UNCONFIGURED
    if (
        case.method.upper() == method
        and case.path == path
        and response.status_code == status
        and words in response.text
    ):
        return None
    raise AssertionError(f"Server error: {response.status_code} {response.text[:500]}")
