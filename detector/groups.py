"""Group membership as a graph: who a grant reaches, and which groups hold a principal.

A *group* is any ``group`` of an effective membership (the newest row of each
``(group, member)`` in ``memberships`` has ``removed = 0``); a member may itself be a
group (nested groups). Any other name is a principal. Shared by the blast radius of an
incident (:mod:`detector.triage`) and the entity pages (:mod:`detector.entities`).
"""

from __future__ import annotations

from collections import deque

from clickhouse_connect.driver.client import Client

#: Group -> its direct members (principals and groups), each list sorted.
Edges = dict[str, list[str]]


def membership_edges(client: Client) -> Edges:
    """Every effective membership, as each group's sorted direct members.

    Parameters
    ----------
    client : Client
        The store.

    Returns
    -------
    dict of str to list of str
        Group name -> its direct members.
    """
    edges: Edges = {}
    for group, member in client.query(
            "SELECT `group`, member FROM memberships FINAL WHERE NOT removed ORDER BY `group`, member").result_rows:
        edges.setdefault(group, []).append(member)
    return edges


def reachable_members(edges: Edges, grantee: str) -> list[tuple[str, list[str]]]:
    """Every principal (non-group) reachable from ``grantee``, with the chain of groups that brings it in.

    Breadth first, so each principal comes with its shortest chain (cycles and diamonds
    included); principals are listed in the order they are reached.

    Parameters
    ----------
    edges : dict
        From :func:`membership_edges`.
    grantee : str
        A group or a principal.

    Returns
    -------
    list of (principal, chain)
        ``chain`` starts with ``grantee`` and ends with the group the principal is a direct
        member of. A grantee that is not a group reaches itself: ``[(grantee, [grantee])]``.
    """
    if grantee not in edges:
        return [(grantee, [grantee])]  # a principal, not a group
    found: list[tuple[str, list[str]]] = []
    seen = {grantee}
    todo: deque[tuple[str, list[str]]] = deque([(grantee, [grantee])])
    while todo:
        node, path = todo.popleft()
        for member in edges.get(node, []):
            if member in seen:
                continue  # cycles and diamonds: the shortest chain explains it
            seen.add(member)
            if member in edges:
                todo.append((member, [*path, member]))
            else:
                found.append((member, path))
    return found


def containing_groups(edges: Edges, member: str) -> list[tuple[str, list[str]]]:
    """Every group that holds ``member``, directly or through nested groups, with the chain.

    Breadth first from the member upwards, so each group comes with its shortest chain.

    Parameters
    ----------
    edges : dict
        From :func:`membership_edges`.
    member : str
        A principal (or a group).

    Returns
    -------
    list of (group, chain)
        ``chain`` is the groups from the one ``member`` is directly in up to ``group``
        (``[group]`` for a direct membership); sorted by chain length, then group name.
    """
    parents: dict[str, list[str]] = {}
    for group, members in edges.items():
        for child in members:
            parents.setdefault(child, []).append(group)
    found: list[tuple[str, list[str]]] = []
    seen = {member}
    todo: deque[tuple[str, list[str]]] = deque([(member, [])])
    while todo:
        node, path = todo.popleft()
        for group in sorted(parents.get(node, [])):
            if group in seen:
                continue
            seen.add(group)
            chain = [*path, group]
            found.append((group, chain))
            todo.append((group, chain))
    return sorted(found, key=lambda item: (len(item[1]), item[0]))


__all__ = ["Edges", "containing_groups", "membership_edges", "reachable_members"]
