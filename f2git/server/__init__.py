"""The tornado server: git smart HTTP, refresh on click, JSON API, dashboard."""
