"""The one place that lists the languages: adding one is a module beside this file and a line here."""

from __future__ import annotations

from llm_sandbox.const import SupportedLanguage
from llm_sandbox.errors import LanguageNotSupportedError
from llm_sandbox.hints import did_you_mean
from llm_sandbox.languages import cpp, go, java, javascript, python, r, ruby
from llm_sandbox.languages.base import Language

LANGUAGES: dict[str, Language] = {
    module.LANGUAGE.name: module.LANGUAGE for module in (python, javascript, java, cpp, go, ruby, r)
}


def get_language(name: str | SupportedLanguage) -> Language:
    """The language called ``name`` (case-insensitive), or LanguageNotSupportedError naming the supported ones."""
    key = (name.value if isinstance(name, SupportedLanguage) else str(name)).strip().lower()
    language = LANGUAGES.get(key)
    if language is None:
        raise LanguageNotSupportedError(
            f"language {name!r} is not supported{did_you_mean(key, LANGUAGES)}; "
            f"supported: {', '.join(sorted(LANGUAGES))}"
        )
    return language
