"""Reusable console widgets: filterable table, context header with breadcrumbs, sparkline, command bar."""
