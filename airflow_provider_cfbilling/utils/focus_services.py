"""Which FOCUS ServiceCategory and ServiceSubcategory each Cloudflare service belongs to.

A maintained table, plain data. FOCUS fixes the allowed categories and, for each, its subcategories (the
FinOps Foundation's FOCUS 1.2 rule model, ``ServiceCategory-C-003-M`` and ``ServiceSubcategory-C-004-M``);
Cloudflare's ``ServiceName`` is free text ("Workers Standard", "R2 Storage", "Argo Smart Routing").

Lookup (:func:`service_category`): the longest product name in :data:`SERVICE_CATEGORIES` that the
ServiceName starts with, word for word ("Workers KV Reads" is Workers KV, "Workers Standard" is Workers).
A service the table does not know falls back to Cloudflare's own ``ServiceFamilyName`` when that names a
FOCUS category (subcategory ``Other (<category>)``), else to ``Other`` / ``Other (Other)``: never a
guess from the name's words. To add a service, add its product name here and a case in
tests/test_focus.py.
"""

from __future__ import annotations

#: Cloudflare product name (how its usage's ServiceName begins) -> (ServiceCategory, ServiceSubcategory).
SERVICE_CATEGORIES: dict[str, tuple[str, str]] = {
    "AI Gateway": ("AI and Machine Learning", "AI Platforms"),
    "Argo Smart Routing": ("Networking", "Network Routing"),
    "Browser Rendering": ("Compute", "Serverless Compute"),
    "Cloudflare Images": ("Media", "Other (Media)"),
    "D1": ("Databases", "Relational Databases"),
    "Durable Objects": ("Compute", "Serverless Compute"),
    "Hyperdrive": ("Databases", "Caching"),
    "Image Resizing": ("Media", "Other (Media)"),
    "Images": ("Media", "Other (Media)"),
    "Load Balancing": ("Networking", "Application Networking"),
    "Logpush": ("Management and Governance", "Observability"),
    "Pages Functions": ("Compute", "Serverless Compute"),
    "Queues": ("Integration", "Messaging"),
    "R2": ("Storage", "Object Storage"),
    "Rate Limiting": ("Networking", "Network Security"),
    "Spectrum": ("Networking", "Network Connectivity"),
    "Stream": ("Media", "Media Streaming"),
    "Vectorize": ("Databases", "Other (Databases)"),
    "Workers": ("Compute", "Serverless Compute"),
    "Workers AI": ("AI and Machine Learning", "Generative AI"),
    "Workers KV": ("Databases", "NoSQL Databases"),
    "Workers Logs": ("Management and Governance", "Observability"),
}

#: The ServiceCategory values FOCUS 1.2 allows.
FOCUS_CATEGORIES: frozenset[str] = frozenset(
    {
        "AI and Machine Learning",
        "Analytics",
        "Business Applications",
        "Compute",
        "Databases",
        "Developer Tools",
        "Identity",
        "Integration",
        "Internet of Things",
        "Management and Governance",
        "Media",
        "Migration",
        "Mobile",
        "Multicloud",
        "Networking",
        "Other",
        "Security",
        "Storage",
        "Web",
    }
)

OTHER: tuple[str, str] = ("Other", "Other (Other)")


def service_category(service_name: str | None, service_family: str | None = None) -> tuple[str, str]:
    """The (ServiceCategory, ServiceSubcategory) of a Cloudflare service; see the module docstring.

    :param service_name: the record's ``ServiceName``
    :param service_family: the record's ``ServiceFamilyName`` (Cloudflare's own grouping), if any
    """
    words = (service_name or "").split()
    for length in range(len(words), 0, -1):
        known = SERVICE_CATEGORIES.get(" ".join(words[:length]))
        if known is not None:
            return known
    family = (service_family or "").strip()
    if family in FOCUS_CATEGORIES:  # "Other" gives OTHER itself
        return family, f"Other ({family})"
    return OTHER
