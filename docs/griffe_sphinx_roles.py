"""A griffe extension for the API reference (mkdocs.yml): Sphinx roles in docstrings to Markdown.

thrasks' docstrings use Sphinx's cross-reference roles (``:class:`SchedulingMode```,
``:meth:`create_task```), which ``help()`` shows as they are but Markdown would print literally.
This turns each role into inline code, linked (a required mkdocs-autorefs link: a broken one
fails the strict build) when it names an object of the public API:

- a public name of ``thrasks`` (``ThreadedTaskGroup``, ``SchedulingMode.QUEUE``, ...) or a
  ``thrasks.``-qualified one;
- a member of the class the docstring belongs to (``:meth:`shutdown``` in ``WorkerPool``),
  linked under the class's public name.

Anything else (``asyncio.TaskGroup``, ``ExceptionGroup``, ...) becomes plain inline code: the
build is offline, so there is no inventory of the standard library to link to.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|data|mod|obj):`(~?)([^`<>]+)`")

# Classes of the C core whose docstrings are shown under a public class of another name.
PUBLIC_CLASS = {"thrasks._core.Group": "thrasks.ThreadedTaskGroup", "thrasks._core.WorkerPool": "thrasks.WorkerPool"}


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "thrasks":
            return
        public = {str(name) for name in pkg.exports or ()}
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda m: _link(m, obj, public), obj.docstring.value)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_walk(member))  # type: ignore[arg-type]
    return found


def _public_class(cls: griffe.Object, public: set[str]) -> str | None:
    if cls.path in PUBLIC_CLASS:
        return PUBLIC_CLASS[cls.path]
    if cls.name in public:
        return f"thrasks.{cls.name}"
    if cls.path == "thrasks._core.Future":
        return cls.path
    return None


def _link(match: re.Match[str], obj: griffe.Object, public: set[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    name = target.removesuffix("()")
    text = name.rsplit(".", 1)[-1] if short else target
    ident = None
    if name.startswith("thrasks."):
        ident = name
    elif name.split(".", 1)[0] in public:
        ident = f"thrasks.{name}"
    else:
        cls = obj if obj.is_class else obj.parent
        if cls is not None and cls.is_class and name in cls.all_members:
            owner = _public_class(cls, public)
            if owner is not None:
                ident = f"{owner}.{name}"
    return f"[`{text}`][{ident}]" if ident else f"`{text}`"
