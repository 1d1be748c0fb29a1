"""Which roles may become a tenant login: only ones whose sessions the policies can limit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from metering.billing.logins import RoleFacts, role_name_problem, role_problem

PLAIN = RoleFacts(
    can_login=True,
    superuser=False,
    bypasses_rls=False,
    member_of_reader=False,
    member_of_owner=False,
)


@pytest.mark.parametrize("name", ["acme_portal", "Portal.Acme-2", "_svc", "a" * 63])
def test_plain_role_names_are_accepted(name: str) -> None:
    assert role_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "not 1-63 characters"),
        ("a" * 64, "not 1-63 characters"),
        ("2fast", "not 1-63 characters"),
        ('x"; DROP ROLE y; --', "not 1-63 characters"),
        ("acme portal", "not 1-63 characters"),
        ("pg_monitor", "reserved"),
        ("PG_thing", "reserved"),
        ("metering_reader", "group role"),
        ("metering_tenant", "group role"),
    ],
)
def test_names_a_login_cannot_have_are_refused_with_the_reason(name: str, why: str) -> None:
    problem = role_name_problem(name)
    assert problem is not None and why in problem


def test_a_plain_login_role_may_become_a_tenant_login() -> None:
    assert role_problem("acme_portal", PLAIN) is None


def test_a_group_role_is_refused_since_isolation_follows_the_role_that_logged_in() -> None:
    problem = role_problem("portal", replace(PLAIN, can_login=False))
    assert problem is not None and "NOLOGIN" in problem


@pytest.mark.parametrize(
    ("attribute", "named"),
    [
        ("superuser", "a superuser"),
        ("bypasses_rls", "BYPASSRLS"),
        ("member_of_reader", "a member of metering_reader"),
        ("member_of_owner", "a member of the tables' owner"),
    ],
)
def test_a_role_that_reads_every_tenant_is_refused_and_says_why(attribute: str, named: str) -> None:
    problem = role_problem("finance", replace(PLAIN, **{attribute: True}))
    assert problem is not None and "reads every tenant's rows" in problem and named in problem
