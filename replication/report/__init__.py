"""Claim records and the report they feed (claims.json, claims.md, index.html, figures/)."""
