"""Admin-edited templates: errors carry the line and reason; the sandbox holds; context is plain data."""

import pytest

from provisioner.pxe import TemplateError, render_template
from tests.unit.pxe.support import context


def test_plain_render_uses_the_context():
    assert render_template("{{ hostname }}.{{ domain }} {{ urls.events.started }}\n", context()) == (
        "node01.dc1.example.net http://192.0.2.10:8000/i/cb-0123456789abcdefABCDEF/events/started\n"
    )


def test_broken_syntax_names_the_line():
    source = "line one\nline two\n{% if hostname %}\nno endif here\n"
    with pytest.raises(TemplateError) as excinfo:
        render_template(source, context())
    assert excinfo.value.lineno == 4
    assert "line 4" in str(excinfo.value) and "endif" in str(excinfo.value)


def test_unclosed_expression_names_the_line():
    with pytest.raises(TemplateError) as excinfo:
        render_template("a\nb\n{{ hostname \n", context())
    assert excinfo.value.lineno == 3


def test_unknown_variable_is_an_error_naming_it_and_its_line():
    source = "hostname {{ hostname }}\n\nd-i netcfg/get_gateway string {{ gatway }}\n"
    with pytest.raises(TemplateError) as excinfo:
        render_template(source, context())
    assert "'gatway' is undefined" in str(excinfo.value)
    assert excinfo.value.lineno == 3


def test_unknown_attribute_of_known_variable_is_an_error():
    with pytest.raises(TemplateError, match="prefx"):
        render_template("{{ network.prefx }}", context())


def test_missing_network_is_none_not_an_empty_string():
    # A DHCP machine's template must branch on `network`; using its fields without the branch fails loudly.
    with pytest.raises(TemplateError, match="address"):
        render_template("{{ network.address }}", context(static=False))


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ hostname.__class__ }}",
        "{{ urls.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ ''.format.__self__ }}",
    ],
)
def test_sandbox_escape_attempts_are_refused(source):
    with pytest.raises(TemplateError) as excinfo:
        render_template("ok\n" + source, context())
    assert excinfo.value.lineno == 2
    assert "unsafe" in str(excinfo.value) or "undefined" in str(excinfo.value)


def test_template_cannot_change_the_context():
    ctx = context()
    with pytest.raises(TemplateError, match="unsafe"):
        render_template("{{ ssh_keys.append('ssh-ed25519 AAAA intruder') }}", ctx)
    with pytest.raises(TemplateError, match="unsafe"):
        render_template("{{ urls.update(base='http://evil') }}", ctx)
    assert len(ctx["ssh_keys"]) == 2 and ctx["urls"]["base"] == "http://192.0.2.10:8000"


def test_runtime_error_in_template_is_a_template_error_with_line():
    with pytest.raises(TemplateError) as excinfo:
        render_template("x\ny\n{{ 1 // 0 }}\n", context())
    assert excinfo.value.lineno == 3 and "ZeroDivisionError" in str(excinfo.value)


def test_context_must_be_plain_data():
    class Machine:
        hostname = "node01"

    with pytest.raises(TypeError, match=r"context\.machine"):
        render_template("{{ machine.hostname }}", {"machine": Machine()})
    with pytest.raises(TypeError, match=r"context\.nics\[0\]"):
        render_template("", {"nics": [object()]})


def test_shquote_and_yaml_filters_quote_hostile_values():
    ctx = {"v": 'a\'b $(reboot) "c": d\n'}
    assert render_template("{{ v | shquote }}", ctx) == "'a'\"'\"'b $(reboot) \"c\": d\n'"
    assert render_template("{{ v | yaml }}", ctx) == '"a\'b $(reboot) \\"c\\": d\\n"'
