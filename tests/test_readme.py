"""The README shows the example configs as shipped (core/daemon/examples): never a copy that
drifted from what `ttquant config example` prints."""
import pathlib
import re

from ttquant.core.daemon.config import example_text

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_the_readmes_example_configs_are_the_shipped_ones():
    text = README.read_text()
    shown = dict(re.findall(r"<summary><code>ttquant config example (\w+)</code></summary>\n\n```toml\n(.*?)\n```",
                            text, re.S))
    assert sorted(shown) == ["gateway", "md", "record", "risk", "strategy"]
    for role, body in shown.items():
        assert body.rstrip() == example_text(role).rstrip(), f"README's {role} example differs from the package's"
