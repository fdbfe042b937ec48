"""The component schemas of the OpenAPI document (:mod:`api.openapi`): every answer's body, closed and exact."""

from __future__ import annotations

from typing import Any, Final

# Every field in its range; only days 29-31 that a month lacks still pass the pattern (the description says so).
ISO_PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z$"
)


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """An object schema with exactly ``properties``, all required."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


# A local calendar date in the service's zone, as Rocket.Chat's day/month/year fields.
_LOCAL_DATE: Final = {
    "day": {"type": "integer", "minimum": 1, "maximum": 31},
    "month": {"type": "integer", "minimum": 1, "maximum": 12},
    "year": {"type": "integer", "minimum": 1, "maximum": 9999},
}

SCHEMAS: Final[dict[str, Any]] = {
    "Error": closed(
        {"success": {"type": "boolean", "enum": [False]}, "error": {"type": "string"}},
        "Rocket.Chat's error body.",
    ),
    "ValidationError": closed(
        {
            "success": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "string",
                "pattern": r"^Match error: (Failed Match\.Where validation in field [a-z]+|Missing key '[a-z]+')$",
            },
        },
        "Meteor check's message for the first invalid parameter (in query order), else the first missing one.",
    ),
    "Unauthorized": closed(
        {
            "success": {"type": "boolean", "enum": [False]},
            "error": {"type": "string", "enum": ["You must be logged in to do this."]},
            "status": {"type": "string", "enum": ["error"]},
            "message": {"type": "string", "enum": ["You must be logged in to do this."]},
        }
    ),
    "ActiveUsersDay": closed(
        {
            "usersList": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "users": {"type": "integer", "minimum": 1},
            **_LOCAL_DATE,
        }
    ),
    "ActiveUsers": closed(
        {
            "month": {
                "type": "array",
                "items": ref("ActiveUsersDay"),
                "description": "Days with at least one active user, newest first.",
            },
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "NewUsersDay": closed(
        {
            "day": {
                "type": "string",
                "pattern": ISO_PATTERN,
                "description": "The day's local midnight in the service's zone, as a UTC toISOString instant.",
            },
            "users": {"type": "integer", "minimum": 1},
        }
    ),
    "CountAndVariation": closed(
        {
            "count": {"type": "integer", "minimum": 0},
            "variation": {"type": "integer", "description": "count minus the compared count (may be negative)."},
        }
    ),
    "NewUsers": closed(
        {
            "days": {"type": "array", "items": ref("NewUsersDay"), "description": "Newest first, at most D."},
            "period": ref("CountAndVariation"),
            "yesterday": ref("CountAndVariation"),
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "HourOfDay": closed(
        {
            "users": {"type": "integer", "minimum": 1},
            "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            **_LOCAL_DATE,
        }
    ),
    "UsersByTimeOfDay": closed(
        {"week": {"type": "array", "items": ref("HourOfDay")}, "success": {"type": "boolean", "enum": [True]}}
    ),
    "HourSlot": closed(
        {
            "users": {"type": "integer", "minimum": 0},
            "hour": {"type": "integer", "enum": list(range(22, -1, -2)), "description": "Slot of hours h and h+1."},
        }
    ),
    "HourlyData": closed(
        {
            "hours": {"type": "array", "items": ref("HourSlot"), "minItems": 0, "maxItems": 12},
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "WeekDay": closed(
        {
            "users": {"type": "integer", "minimum": 1},
            **_LOCAL_DATE,
        }
    ),
    "WeeklyData": closed(
        {
            "month": {"type": "array", "items": ref("WeekDay"), "maxItems": 8},
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "SummaryDay": closed(
        {
            "date": {"type": "string", "format": "date"},
            "dau": {"type": "integer", "minimum": 0},
            "wau": {"type": "integer", "minimum": 0, "description": "Distinct users over this day and the 6 before."},
            "mau": {"type": "integer", "minimum": 0, "description": "Distinct users over this day and the 29 before."},
        }
    ),
    "Summary": closed(
        {
            "timezone": {"type": "string", "description": "The IANA zone whose local days the answer uses."},
            "start": {
                "type": "string",
                "format": "date",
                "nullable": True,
                "description": "First day reported (null when no day of the range can hold data).",
            },
            "end": {"type": "string", "format": "date", "nullable": True, "description": "Last day reported."},
            "distinctUsers": {"type": "integer", "minimum": 0, "description": "Distinct users over start..end."},
            "days": {
                "type": "array",
                "items": ref("SummaryDay"),
                "description": "Every day of the range that can hold data, oldest first, zero days included.",
            },
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "ForgetRequest": closed(
        {
            "userIds": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"type": "string", "minLength": 1, "maxLength": 128},
                "description": "The ids to forget (a repeated id counts once).",
            }
        }
    ),
    "Forgotten": closed(
        {
            "forgotten": {"type": "integer", "minimum": 1, "description": "Distinct ids forgotten."},
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "Cohort": closed(
        {
            "start": {"type": "string", "format": "date", "description": "First day of the cohort period."},
            "size": {"type": "integer", "minimum": 0, "description": "The cohort's members."},
            "returned": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "Entry k: the members active in the k-th period after the cohort's (0: its own).",
            },
        }
    ),
    "Retention": closed(
        {
            "timezone": {"type": "string", "description": "The IANA zone whose local days the answer uses."},
            "period": {"type": "string", "enum": ["day", "week", "month"]},
            "cohort": {"type": "string", "enum": ["first", "new", "active"]},
            "start": {"type": "string", "format": "date", "nullable": True, "description": "First cohort's first day."},
            "end": {"type": "string", "format": "date", "nullable": True, "description": "Last cohort's last day."},
            "cohorts": {"type": "array", "items": ref("Cohort"), "description": "Every cohort period, oldest first."},
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "Stickiness": closed(
        {
            "timezone": {"type": "string", "description": "The IANA zone whose local days the answer uses."},
            "start": {"type": "string", "format": "date", "nullable": True, "description": "First day reported."},
            "end": {"type": "string", "format": "date", "nullable": True, "description": "Last day reported."},
            "distinctUsers": {"type": "integer", "minimum": 0, "description": "Distinct users over start..end."},
            "activeDays": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "Entry k-1: the users active on exactly k of the reported days.",
            },
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "BreakdownDay": closed(
        {
            "date": {"type": "string", "format": "date"},
            "dau": {"type": "integer", "minimum": 0, "description": "Users active that day with this value."},
        }
    ),
    "BreakdownValue": closed(
        {
            "value": {"type": "string", "description": "The value, or (other) for the values past the cap."},
            "distinctUsers": {"type": "integer", "minimum": 1, "description": "Distinct users over start..end."},
            "days": {"type": "array", "items": ref("BreakdownDay"), "description": "Every reported day, oldest first."},
        }
    ),
    "Breakdown": closed(
        {
            "timezone": {"type": "string", "description": "The IANA zone whose local days the answer uses."},
            "start": {"type": "string", "format": "date", "nullable": True, "description": "First day reported."},
            "end": {"type": "string", "format": "date", "nullable": True, "description": "Last day reported."},
            "property": {"type": "string", "description": "The property broken down."},
            "values": {
                "type": "array",
                "items": ref("BreakdownValue"),
                "description": "Values with a user in the range, by distinctUsers descending, then value.",
            },
            "success": {"type": "boolean", "enum": [True]},
        }
    ),
    "Health": closed({"status": {"type": "string", "enum": ["ok"]}}),
    "Readiness": closed(
        {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "checks": closed(
                {
                    "redis": closed({"ok": {"type": "boolean"}, "error": {"type": "string", "nullable": True}}),
                    "consumer": closed(
                        {
                            "ok": {"type": "boolean"},
                            "ageSeconds": {
                                "type": "number",
                                "minimum": 0,
                                "nullable": True,
                                "description": "Age of the freshest consumer heartbeat.",
                            },
                            "members": {"type": "integer", "minimum": 0},
                        }
                    ),
                }
            ),
        }
    ),
}
