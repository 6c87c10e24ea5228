"""Help links that work where Azure DevOps shows them: the task editor renders `helpMarkDown` with no base URL,
so a relative link (`docs/tasks/AmlRunPipeline.md`) is broken there. At package time every relative Markdown
link in a task.json becomes absolute on the repository named in vss-extension.json (`repository.uri`), and a
task without `helpUrl` gets its reference page (`docs/tasks/<Name>.md`) when the repository has one."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

_RELATIVE_LINK = re.compile(r"\]\((?![a-zA-Z][a-zA-Z0-9+.-]*:|#|/)([^)\s]+)\)")


def repository_base(manifest: dict) -> str | None:
    """`https://host/owner/repo/blob/HEAD/` from the manifest's git repository, or None."""
    repository = manifest.get("repository")
    uri = (repository.get("uri") or repository.get("url")) if isinstance(repository, dict) else None
    if not isinstance(uri, str) or not uri.startswith("https://"):
        return None
    uri = uri.rstrip("/").removesuffix(".git")
    return f"{uri}/blob/HEAD/"


def absolute(text: str, base: str) -> str:
    return _RELATIVE_LINK.sub(lambda found: f"]({base}{found.group(1).removeprefix('./')})", text)


def with_absolute_help(task: Any, base: str | None, root: Path) -> Any:
    """The task with absolute help links and a helpUrl (unchanged without a repository URL)."""
    if not isinstance(task, dict) or base is None:
        return task
    result = copy.deepcopy(task)
    if isinstance(result.get("helpMarkDown"), str):
        result["helpMarkDown"] = absolute(result["helpMarkDown"], base)
    for item in result.get("inputs") or []:
        if isinstance(item, dict) and isinstance(item.get("helpMarkDown"), str):
            item["helpMarkDown"] = absolute(item["helpMarkDown"], base)
    page = f"docs/tasks/{result.get('name')}.md"
    if "helpUrl" not in result and (Path(root) / page).is_file():
        result["helpUrl"] = base + page
    return result
