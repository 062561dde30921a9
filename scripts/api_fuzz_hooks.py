"""schemathesis hooks for scripts/api_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

`GET /api/apps/{name}/manifests?format=yaml` answers the `aiops render` stream: several YAML
documents separated by `---`, which RFC 9512 allows under `application/yaml`. schemathesis's
built-in YAML deserializer reads one document (`yaml.load`) and fails on a stream with an
internal traceback, so the response could not be checked at all. This reads every document;
the OpenAPI document gives that response no schema beyond its media type.
"""

import schemathesis
import yaml

# Every YAML media type schemathesis knows: its lookup takes the first registered type of the
# YAML family, so replacing only `application/yaml` would leave the built-in one in front.
YAML_TYPES = ("text/yaml", "text/x-yaml", "application/x-yaml", "text/vnd.yaml", "application/yaml")


@schemathesis.deserializer(*YAML_TYPES)
def yaml_stream(_ctx, response):
    """All documents of a YAML stream, as a list."""
    return list(yaml.safe_load_all(response.content.decode(response.encoding or "utf-8")))
