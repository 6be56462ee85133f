"""The settings schema: node.toml sections and `p2pfl simulate` settings, each field with its
default, help text and check; settings both have are declared once (p2pfl.settings.fields).

Loading (p2pfl.settings.load), the TOML writer and the `p2pfl init` template
(p2pfl.settings.toml_out) and the `simulate` flags (p2pfl.cli) are all generated from it.
"""
