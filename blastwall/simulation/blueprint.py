"""The fixed shape of the simulated company: teams, sites, named resources, jobs.

Everything here is plain data; :mod:`organisation` draws the people and sizes
from it with the spec's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The group every person belongs to, transitively.
ALL_STAFF = "all-staff"
#: Domain of the user identities; grantees outside it are external.
CORP_DOMAIN = "corp.example"


@dataclass(frozen=True)
class Site:
    """An office: its UTC offset (no daylight saving, for reproducibility) and subnet."""

    name: str
    utc_offset_min: int
    subnet: int


SITES = (
    Site("london", 0, 11),
    Site("berlin", 60, 12),
    Site("new-york", -300, 13),
    Site("san-francisco", -480, 14),
    Site("bangalore", 330, 15),
    Site("singapore", 480, 16),
)
SITE_INDEX = {s.name: i for i, s in enumerate(SITES)}


@dataclass(frozen=True)
class Team:
    """A team: where it sits in the group tree, how busy it is, what it touches.

    Parameters
    ----------
    name : str
        Team id, also the ``team`` column of ``principals``.
    path : tuple of str
        Groups from the department down to (excluding) the team's own group.
    weight : float
        Share of the people.
    events_per_day : float
        Median events of a member on a working day.
    sites : dict
        Site name → share of the team there.
    interests : dict
        Resource domain → weight of that domain in a member's working set.
    titles : tuple of str
        Individual-contributor titles.
    manager_title : str
        Title of the team's manager.
    via : dict
        ``via`` → share of a member's events.
    quarter_close : bool
        Volume spikes around the fiscal quarter close.
    """

    name: str
    path: tuple[str, ...]
    weight: float
    events_per_day: float
    sites: dict[str, float]
    interests: dict[str, float]
    titles: tuple[str, ...]
    manager_title: str
    via: dict[str, float] = field(
        default_factory=lambda: {"console": 0.5, "notebook": 0.2, "api": 0.2, "ai_assistant": 0.1})
    quarter_close: bool = False


_ENG = ("dept-engineering",)
_ML = ("dept-engineering", "div-ml")
_PEOPLE = ("dept-people",)
_BUSINESS = ("dept-business",)
_CORPORATE = ("dept-corporate",)

TEAMS = (
    Team("ml-research", _ML, 0.13, 80, {"san-francisco": 0.4, "london": 0.35, "berlin": 0.25},
         {"research": 4, "curated": 3, "models": 2, "runs": 1, "platform": 1, "corp": 1},
         ("Research Scientist", "Senior Research Scientist", "Research Engineer", "Staff Research Scientist"),
         "Research Manager", {"notebook": 0.5, "console": 0.2, "api": 0.15, "ai_assistant": 0.15}),
    Team("ml-platform", _ML, 0.09, 70, {"san-francisco": 0.3, "london": 0.3, "berlin": 0.2, "bangalore": 0.2},
         {"platform": 4, "curated": 2, "models": 1, "runs": 2, "sre": 1, "corp": 1},
         ("ML Engineer", "Senior ML Engineer", "ML Infrastructure Engineer"), "Engineering Manager, ML Platform",
         {"notebook": 0.3, "console": 0.3, "api": 0.3, "ai_assistant": 0.1}),
    Team("data-eng", _ENG, 0.10, 100, {"london": 0.4, "berlin": 0.3, "bangalore": 0.3},
         {"raw": 4, "curated": 4, "analytics": 1, "platform": 1, "corp": 1},
         ("Data Engineer", "Senior Data Engineer", "Analytics Engineer"), "Engineering Manager, Data",
         {"notebook": 0.35, "console": 0.25, "api": 0.3, "ai_assistant": 0.1}),
    Team("sre", _ENG, 0.07, 55, {"london": 0.3, "new-york": 0.3, "singapore": 0.2, "san-francisco": 0.2},
         {"sre": 5, "platform": 2, "security": 1, "secrets": 1, "corp": 1},
         ("Site Reliability Engineer", "Senior SRE", "Production Engineer"), "SRE Manager",
         {"console": 0.5, "api": 0.35, "notebook": 0.05, "ai_assistant": 0.1}),
    Team("security", _ENG, 0.05, 55, {"london": 0.5, "new-york": 0.5},
         {"security": 5, "sre": 1, "secrets": 1, "hr": 0.3, "corp": 1},
         ("Security Engineer", "Detection Engineer", "Security Analyst"), "Head of Security",
         {"console": 0.6, "api": 0.25, "notebook": 0.1, "ai_assistant": 0.05}),
    Team("analytics", _BUSINESS, 0.10, 110, {"new-york": 0.4, "london": 0.4, "berlin": 0.2},
         {"analytics": 5, "sales": 2, "support": 1, "finance": 1, "corp": 1},
         ("Data Analyst", "Senior Data Analyst", "Data Scientist"), "Analytics Manager",
         {"console": 0.4, "notebook": 0.35, "api": 0.1, "ai_assistant": 0.15}, quarter_close=True),
    Team("finance", _BUSINESS, 0.06, 60, {"new-york": 0.6, "london": 0.4},
         {"finance": 6, "sales": 1, "corp": 1},
         ("Financial Analyst", "Accountant", "FP&A Manager"), "Finance Director",
         {"console": 0.7, "notebook": 0.1, "api": 0.1, "ai_assistant": 0.1}, quarter_close=True),
    Team("sales", _BUSINESS, 0.12, 30, {"new-york": 0.5, "london": 0.3, "singapore": 0.2},
         {"sales": 6, "analytics": 1, "corp": 1},
         ("Account Executive", "Sales Engineer", "Sales Operations Analyst"), "Regional Sales Director",
         {"console": 0.85, "api": 0.05, "notebook": 0.0, "ai_assistant": 0.10}),
    Team("support", _BUSINESS, 0.12, 45, {"bangalore": 0.4, "new-york": 0.3, "london": 0.3},
         {"support": 6, "sales": 1, "corp": 1},
         ("Support Engineer", "Customer Support Specialist", "Support Operations Analyst"), "Support Manager",
         {"console": 0.8, "api": 0.05, "notebook": 0.0, "ai_assistant": 0.15}),
    Team("hr", _PEOPLE, 0.05, 35, {"london": 0.5, "new-york": 0.5},
         {"hr": 6, "people": 1, "corp": 1},
         ("HR Business Partner", "Recruiter", "HR Operations Specialist"), "Head of HR",
         {"console": 0.85, "notebook": 0.0, "api": 0.05, "ai_assistant": 0.10}),
    Team("people-analytics", _PEOPLE, 0.04, 60, {"london": 0.6, "berlin": 0.4},
         {"people": 6, "hr": 2, "corp": 1},
         ("People Analyst", "People Data Scientist"), "People Analytics Lead",
         {"console": 0.3, "notebook": 0.45, "api": 0.1, "ai_assistant": 0.15}),
    Team("legal", _CORPORATE, 0.03, 20, {"london": 0.5, "new-york": 0.5},
         {"legal": 6, "hr": 0.5, "corp": 1},
         ("Counsel", "Paralegal", "Privacy Counsel"), "General Counsel",
         {"console": 0.9, "notebook": 0.0, "api": 0.0, "ai_assistant": 0.10}),
    Team("exec", _CORPORATE, 0.02, 12, {"new-york": 0.5, "london": 0.5},
         {"exec": 5, "finance": 2, "analytics": 1, "corp": 1},
         ("VP Engineering", "VP People", "VP Sales", "Chief Financial Officer", "Chief of Staff"),
         "Chief Executive Officer",
         {"console": 0.8, "notebook": 0.0, "api": 0.0, "ai_assistant": 0.2}),
)
TEAM_INDEX = {t.name: i for i, t in enumerate(TEAMS)}

#: Department groups contain these intermediate groups (3-level nesting under all-staff).
SUBGROUPS = {"div-ml": ("ml-research", "ml-platform")}


@dataclass(frozen=True)
class ResourceTemplate:
    """A named resource of the catalogue."""

    name: str
    kind: str
    sensitivity: str
    categories: tuple[str, ...] = ()
    sanitized: int = 0
    owner_team: str = "data-eng"


def _ds(name: str, sensitivity: str, categories: tuple[str, ...], owner: str, sanitized: int = 0) -> ResourceTemplate:
    kind = {"ds": "dataset", "emb": "embedding", "ft": "feature_table"}[name.split(".", 1)[0]]
    return ResourceTemplate(name, kind, sensitivity, categories, sanitized, owner)


CORE_RESOURCES = (
    # research and curated training corpora: what the trainers consume (sanitised)
    _ds("ds.research.eval_benchmarks", "internal", (), "ml-research", 1),
    _ds("ds.research.human_feedback", "confidential", ("chat", "pii"), "ml-research"),
    _ds("ds.research.human_feedback_sanitized", "internal", ("chat",), "ml-research", 1),
    _ds("ds.research.synthetic_dialogs", "internal", (), "ml-research", 1),
    _ds("emb.research.paper_embeddings", "internal", (), "ml-research", 1),
    _ds("ft.research.tokenizer_stats", "internal", (), "ml-research", 1),
    _ds("ds.curated.web_text", "public", (), "data-eng", 1),
    _ds("ds.curated.code_corpus", "internal", ("source_code",), "data-eng", 1),
    _ds("ds.curated.books", "internal", (), "data-eng", 1),
    _ds("ds.curated.instructions_v3", "internal", (), "data-eng", 1),
    _ds("ds.curated.support_dialogs_sanitized", "internal", ("chat", "customer"), "data-eng", 1),
    _ds("ds.curated.image_captions", "internal", (), "data-eng", 1),
    _ds("ds.curated.clickstream_sanitized", "internal", ("customer",), "data-eng", 1),
    _ds("ds.raw.web_crawl", "internal", (), "data-eng"),
    _ds("ds.raw.app_events", "internal", ("pii",), "data-eng"),
    _ds("ds.raw.clickstream", "confidential", ("pii", "customer"), "data-eng"),
    _ds("ds.raw.source_code_snapshot", "confidential", ("source_code",), "data-eng"),
    _ds("ds.platform.gpu_usage", "internal", (), "ml-platform"),
    _ds("ds.platform.job_metadata", "internal", (), "ml-platform"),
    _ds("ft.platform.cluster_features", "internal", (), "ml-platform"),
    _ds("ds.analytics.product_events", "internal", ("customer",), "analytics"),
    _ds("ds.analytics.revenue_dashboard", "confidential", ("financial",), "analytics"),
    _ds("ds.analytics.user_cohorts", "confidential", ("customer", "pii"), "analytics"),
    _ds("ds.analytics.experiment_results", "internal", (), "analytics"),
    _ds("ft.analytics.user_features", "confidential", ("customer",), "analytics"),
    _ds("ds.hr.employee_directory", "internal", ("pii",), "hr"),
    _ds("ds.hr.performance_reviews", "restricted", ("performance", "pii"), "hr"),
    _ds("ds.hr.compensation", "restricted", ("financial", "pii"), "hr"),
    _ds("ds.hr.health_benefits", "restricted", ("health", "pii"), "hr"),
    _ds("ds.hr.recruiting_pipeline", "confidential", ("pii",), "hr"),
    _ds("ds.people.keystroke_telemetry", "restricted", ("employee_telemetry", "keystrokes"), "people-analytics"),
    _ds("ds.people.chat_logs", "restricted", ("employee_telemetry", "chat"), "people-analytics"),
    _ds("ds.people.productivity_metrics", "restricted", ("employee_telemetry", "performance"), "people-analytics"),
    _ds("ds.people.engagement_survey", "confidential", ("pii",), "people-analytics"),
    _ds("emb.people.chat_embeddings", "restricted", ("employee_telemetry", "chat"), "people-analytics"),
    _ds("ft.people.attrition_features", "confidential", ("performance", "pii"), "people-analytics"),
    _ds("ds.security.auth_logs", "confidential", ("pii",), "security"),
    _ds("ds.security.edr_alerts", "confidential", (), "security"),
    _ds("ds.security.vuln_scans", "internal", (), "security"),
    _ds("ds.sre.service_metrics", "internal", (), "sre"),
    _ds("ds.sre.incident_timeline", "internal", (), "sre"),
    _ds("ds.sre.app_logs", "confidential", ("pii",), "sre"),
    _ds("ds.finance.ledger", "restricted", ("financial",), "finance"),
    _ds("ds.finance.revenue_daily", "confidential", ("financial",), "finance"),
    _ds("ds.finance.forecast", "confidential", ("financial",), "finance"),
    _ds("ds.finance.invoices", "confidential", ("financial", "customer", "pii"), "finance"),
    _ds("ds.finance.payroll", "restricted", ("financial", "pii"), "finance"),
    _ds("ds.sales.crm_accounts", "confidential", ("customer", "pii"), "sales"),
    _ds("ds.sales.pipeline", "confidential", ("financial", "customer"), "sales"),
    _ds("ds.sales.call_transcripts", "confidential", ("chat", "customer"), "sales"),
    _ds("ds.support.tickets", "confidential", ("customer", "pii"), "support"),
    _ds("ds.support.chat_transcripts", "confidential", ("chat", "customer", "pii"), "support"),
    _ds("emb.support.chat_embeddings", "confidential", ("chat", "customer"), "support"),
    _ds("emb.support.kb_embeddings", "internal", (), "support", 1),
    _ds("ds.legal.contracts", "restricted", ("customer", "financial"), "legal"),
    _ds("ds.legal.litigation_hold", "restricted", ("chat", "pii"), "legal"),
    _ds("ds.exec.board_pack", "restricted", ("financial",), "exec"),
    _ds("ds.exec.okr_tracking", "confidential", (), "exec"),
    _ds("ds.corp.public_holidays", "public", (), "hr", 1),
    _ds("ds.corp.office_locations", "public", (), "hr", 1),
    _ds("ds.corp.org_chart", "internal", ("pii",), "hr"),
    _ds("ds.corp.wiki_dump", "internal", (), "security", 1),
    ResourceTemplate("app.sso", "other", "internal", (), 0, "security"),
)

#: Model families: checkpoint size in GB, owning team, training corpora (all sanitised), trainer service.
MODEL_FAMILIES = {
    "llm-7b": (14.0, "ml-research", ("ds.curated.web_text", "ds.curated.books", "ds.curated.instructions_v3",
                                     "ds.research.human_feedback_sanitized"), "svc-trainer-llm"),
    "llm-13b": (26.0, "ml-research", ("ds.curated.web_text", "ds.curated.books", "ds.research.synthetic_dialogs",
                                      "ds.curated.support_dialogs_sanitized"), "svc-trainer-llm"),
    "code-3b": (6.0, "ml-research", ("ds.curated.code_corpus", "ds.curated.instructions_v3"), "svc-trainer-code"),
    "vision-xl": (4.5, "ml-research", ("ds.curated.image_captions", "ds.curated.web_text"), "svc-trainer-vision"),
    "ranker-v3": (1.2, "ml-platform", ("ds.curated.clickstream_sanitized",), "svc-trainer-vision"),
}

#: Pairs of datasets that people routinely join (never chat with performance data).
JOIN_PAIRS = (
    ("ds.analytics.product_events", "ds.analytics.user_cohorts"),
    ("ds.analytics.experiment_results", "ds.analytics.product_events"),
    ("ds.sales.crm_accounts", "ds.sales.pipeline"),
    ("ds.support.tickets", "ds.sales.crm_accounts"),
    ("ds.finance.revenue_daily", "ds.sales.pipeline"),
    ("ds.finance.invoices", "ds.sales.crm_accounts"),
    ("ds.finance.forecast", "ds.finance.revenue_daily"),
    ("ds.people.productivity_metrics", "ds.hr.employee_directory"),
    ("ds.people.engagement_survey", "ds.hr.employee_directory"),
    ("ds.raw.app_events", "ds.raw.clickstream"),
    ("ds.curated.web_text", "ds.curated.books"),
    ("ds.platform.gpu_usage", "ds.platform.job_metadata"),
    ("ds.sre.service_metrics", "ds.sre.incident_timeline"),
    ("ds.security.auth_logs", "ds.hr.employee_directory"),
    ("ds.support.tickets", "ds.support.chat_transcripts"),
    ("ds.hr.recruiting_pipeline", "ds.hr.employee_directory"),
)

#: Extra datasets per domain, so the catalogue grows with the organisation.
EXTRA_TOPICS = {
    "research": ("ablation_results", "red_team_prompts", "preference_pairs", "eval_traces", "toxicity_labels"),
    "curated": ("news_text", "math_problems", "multilingual_text", "dialog_turns", "qa_pairs"),
    "raw": ("mobile_events", "email_bounces", "search_queries", "partner_feeds", "crawl_frontier"),
    "platform": ("queue_latency", "node_inventory", "artifact_registry", "quota_usage"),
    "analytics": ("funnel_daily", "retention_weekly", "ab_assignments", "churn_scores", "marketing_touches"),
    "sales": ("territories", "quotas", "renewals", "leads"),
    "support": ("csat_scores", "escalations", "macros", "sla_breaches"),
    "finance": ("expenses", "budget_plan", "vendor_payments", "tax_filings"),
    "hr": ("onboarding_tasks", "training_records", "leave_requests"),
    "people": ("meeting_load", "collaboration_graph", "badge_swipes"),
    "security": ("phishing_reports", "dlp_events", "access_reviews"),
    "sre": ("alert_history", "deploy_log", "capacity_plan"),
    "legal": ("nda_register", "dsar_requests"),
    "exec": ("strategy_memos",),
    "corp": ("announcements", "it_assets", "travel_policy"),
}
#: (sensitivity, categories, owner team) of the extra datasets of each domain.
DOMAIN_DEFAULTS = {
    "research": ("internal", (), "ml-research"),
    "curated": ("internal", (), "data-eng"),
    "raw": ("internal", ("pii",), "data-eng"),
    "platform": ("internal", (), "ml-platform"),
    "analytics": ("internal", ("customer",), "analytics"),
    "sales": ("confidential", ("customer",), "sales"),
    "support": ("confidential", ("customer",), "support"),
    "finance": ("confidential", ("financial",), "finance"),
    "hr": ("confidential", ("pii",), "hr"),
    "people": ("restricted", ("employee_telemetry",), "people-analytics"),
    "security": ("confidential", (), "security"),
    "sre": ("internal", (), "sre"),
    "legal": ("restricted", (), "legal"),
    "exec": ("restricted", ("financial",), "exec"),
    "corp": ("public", (), "hr"),
}

SECRET_ENVS = ("prod", "staging", "dev", "ci")
SECRET_NAMES = (
    "db-password", "api-key-payments", "s3-access-key", "oauth-client-secret", "jwt-signing-key",
    "smtp-password", "github-token", "slack-webhook", "kafka-sasl", "redis-password", "vault-root-token",
    "gcp-service-key", "tls-private-key", "stripe-secret", "datadog-api-key",
)

#: Where each team routinely exports to (``attributes['destination']``).
EXPORT_DESTINATIONS = {
    "ml-research": ("s3://corp-ml-scratch/exports/", "gs://corp-research-share/"),
    "ml-platform": ("s3://corp-ml-scratch/exports/",),
    "data-eng": ("s3://corp-lake/exports/", "s3://corp-analytics/exports/"),
    "sre": ("s3://corp-ops/exports/",),
    "security": ("s3://corp-security-evidence/",),
    "analytics": ("s3://corp-analytics/exports/", "bi://tableau.corp.example/extracts"),
    "finance": ("gs://corp-finance-reports/", "sftp://reports.corp.example/finance/"),
    "sales": ("bi://tableau.corp.example/extracts",),
    "support": ("s3://corp-support/exports/",),
    "hr": ("sftp://payroll-provider.corp.example/in/", "s3://corp-hr/exports/"),
    "people-analytics": ("s3://corp-hr/exports/",),
    "legal": ("s3://corp-legal/holds/",),
    "exec": ("gs://corp-finance-reports/",),
}

FIRST_NAMES = (
    "alice", "bob", "carol", "dan", "erin", "farid", "grace", "hiro", "ines", "jamal", "kai", "lena", "mateo",
    "nina", "omar", "priya", "quinn", "rosa", "sam", "tara", "umar", "vera", "wei", "xena", "yusuf", "zoe",
    "amara", "bruno", "chloe", "diego", "elif", "felix", "gita", "hugo", "isla", "jonas", "kira", "liam",
    "maya", "noah", "olga", "pablo", "rahul", "sofia", "tomas", "uma", "victor", "wanda", "yara", "zain",
    "aisha", "ben", "chen", "dara", "emil", "fatima", "gabe", "hana", "ivan", "julia", "kofi", "lucia",
    "marco", "nadia", "oscar", "paula", "ravi", "sara", "theo", "ulla", "vikram", "willa", "yuki", "zora",
)
LAST_NAMES = (
    "ng", "smith", "garcia", "kumar", "chen", "muller", "rossi", "tanaka", "okafor", "silva", "novak", "haddad",
    "kowalski", "nguyen", "ivanova", "johansson", "fischer", "lopez", "patel", "kim", "dubois", "jensen",
    "moreau", "sato", "costa", "weber", "ali", "brown", "singh", "yilmaz", "petrov", "larsen", "romero",
    "mendes", "hoffmann", "wright", "osei", "park", "berg", "santos", "khan", "lindqvist", "murphy", "reyes",
    "bauer", "ito", "adeyemi", "varga", "horvat", "rahman", "schmidt", "lee", "walsh", "fernandes", "mwangi",
)

#: Webmail domains of outside accounts (external grants).
EXTERNAL_DOMAINS = ("gmail.com", "outlook.com", "proton.me", "yahoo.com")
