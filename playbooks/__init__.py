"""Containment playbooks as code: the files, the engine, the action library and paging."""
