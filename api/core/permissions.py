"""The one role table: it drives both the permission checks and the ``/roles*`` endpoints.

Roles are the union of both specs, ordered by level. Pairs that share a level also share their
grants (developer = architect, designer = engineer); analyst = executor plus datamart
preview/export. Navigation items are derived from the grants, so what the UI shows and what the
API allows cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

# resource -> actions, in display order (aggregator spec /roles/{role_name})
RESOURCES: Final[dict[str, tuple[str, ...]]] = {
    "pipelines": ("view", "create", "edit", "delete", "execute"),
    "connectors": ("view", "create", "edit", "delete"),
    "transformations": ("view", "create", "edit", "delete", "execute"),
    "datamarts": ("view", "create", "edit", "delete", "refresh", "preview", "export"),
    "storage": ("view", "create", "edit", "delete"),
    "templates": ("view", "create", "edit", "delete"),
    "monitoring": ("view", "edit"),
    "analytics": ("view", "export"),
    "dashboards": ("view", "create", "edit", "delete"),
    "webhooks": ("view", "create", "edit", "delete"),
    "projects": ("view", "create", "edit", "delete"),
    "preferences": ("view", "edit"),
    "users": ("view", "create", "edit", "delete"),
    "roles": ("view",),
    "activity_logs": ("view",),
    "maintenance": ("view", "execute"),
    "settings": ("view", "edit"),
}

# navigation item -> the grant that makes it visible ("dashboard" is every signed-in user's home)
NAVIGATION: Final[dict[str, tuple[str, str] | None]] = {
    "dashboard": None,
    "pipelines": ("pipelines", "view"),
    "connectors": ("connectors", "view"),
    "transformations": ("transformations", "view"),
    "datamarts": ("datamarts", "view"),
    "storage": ("storage", "view"),
    "monitoring": ("monitoring", "view"),
    "analytics": ("analytics", "view"),
    "users": ("users", "view"),
    "maintenance": ("maintenance", "view"),
    "settings": ("settings", "view"),
}

Grants = dict[str, frozenset[str]]


def _all(resource: str) -> frozenset[str]:
    return frozenset(RESOURCES[resource])


def _grants(**resources: str | tuple[str, ...]) -> Grants:
    out: Grants = {}
    for resource, actions in resources.items():
        out[resource] = _all(resource) if actions == "*" else frozenset(actions)
    return out


_ADMIN = {r: _all(r) for r in RESOURCES}
_DEVELOPER = _grants(
    pipelines="*",
    connectors="*",
    transformations="*",
    datamarts="*",
    storage="*",
    templates="*",
    monitoring="*",
    analytics="*",
    dashboards="*",
    webhooks="*",
    projects="*",
    preferences="*",
    users=("view",),
    roles=("view",),
    activity_logs=("view",),
    maintenance=("view",),
    settings=("view",),
)
_DESIGNER = _grants(
    pipelines="*",
    connectors="*",
    transformations="*",
    datamarts="*",
    storage="*",
    templates="*",
    dashboards=("view",),
    webhooks=("view",),
    projects=("view", "create", "edit"),
    preferences="*",
)
_EXECUTOR = _grants(
    pipelines=("view", "execute"),
    connectors=("view",),
    transformations=("view", "execute"),
    datamarts=("view", "refresh"),
    storage=("view",),
    templates=("view",),
    monitoring=("view",),
    dashboards=("view",),
    projects=("view",),
    preferences="*",
)
_ANALYST = {**_EXECUTOR, "datamarts": _EXECUTOR["datamarts"] | {"preview", "export"}}
_EXECUTIVE = _grants(
    pipelines=("view",),
    datamarts=("view", "preview", "export"),
    monitoring=("view",),
    analytics="*",
    dashboards="*",
    projects=("view",),
    preferences="*",
)
_VIEWER = _grants(
    pipelines=("view",),
    connectors=("view",),
    transformations=("view",),
    datamarts=("view",),
    templates=("view",),
    dashboards=("view",),
    projects=("view",),
    preferences="*",
)


@dataclass(frozen=True)
class Role:
    name: str
    display_name: str
    level: int
    description: str
    grants: Grants = field(repr=False)

    def can(self, resource: str, action: str) -> bool:
        return action in self.grants.get(resource, frozenset())

    def permission_matrix(self) -> dict[str, dict[str, bool]]:
        return {res: {a: self.can(res, a) for a in actions} for res, actions in RESOURCES.items()}

    def granted_matrix(self) -> dict[str, dict[str, bool]]:
        """Only the resources the role touches at all (the spec's compact examples)."""
        return {r: m for r, m in self.permission_matrix().items() if any(m.values())}

    def navigation(self) -> dict[str, bool]:
        return {item: need is None or self.can(*need) for item, need in NAVIGATION.items()}


ROLES: Final = MappingProxyType(
    {
        r.name: r
        for r in (
            Role("admin", "Administrator", 100, "Full system access", _ADMIN),
            Role("developer", "Developer", 90, "Development and testing access", _DEVELOPER),
            Role(
                "architect", "Data Architect", 90, "Architecture and project design (= developer)", _DEVELOPER
            ),
            Role("designer", "Designer", 50, "Pipeline and workflow design", _DESIGNER),
            Role(
                "engineer", "Data Engineer", 50, "Build pipelines, manage connectors (= designer)", _DESIGNER
            ),
            Role("executor", "Executor", 40, "Pipeline execution and monitoring", _EXECUTOR),
            Role("analyst", "Data Analyst", 40, "Run pipelines; preview and export datamarts", _ANALYST),
            Role("executive", "Executive", 30, "Analytics and BI access", _EXECUTIVE),
            Role("viewer", "Viewer", 10, "Read-only access", _VIEWER),
        )
    }
)
ROLE_NAMES: Final = tuple(ROLES)
ADMIN_ROLE: Final = "admin"
# API-key scopes: "read" keeps only the actions that change nothing
READ_ONLY_ACTIONS: Final = frozenset({"view", "preview", "export"})


def get_role(name: str) -> Role | None:
    return ROLES.get(name)


def role_can(role_name: str, resource: str, action: str) -> bool:
    role = ROLES.get(role_name)
    return role is not None and role.can(resource, action)


def scope_allows(scopes: list[str] | None, resource: str, action: str) -> bool:
    """Whether an API key's scopes allow an action (the user's role must allow it too).

    Accepted scopes: "*"/"write"/"admin" (everything the user may do), "read" (view-like actions),
    "<resource>:<action>", "<resource>:*". No scopes allow nothing: a key is never wider than it says.
    """
    if not scopes:
        return False
    for scope in scopes:
        if scope in ("*", "write", "admin"):
            return True
        if scope == "read" and action in READ_ONLY_ACTIONS:
            return True
        if scope in (f"{resource}:{action}", f"{resource}:*"):
            return True
    return False


def valid_scope(scope: str) -> bool:
    if scope in ("*", "read", "write", "admin"):
        return True
    resource, _, action = scope.partition(":")
    return resource in RESOURCES and (action == "*" or action in RESOURCES[resource])
