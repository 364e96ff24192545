"""Inventory fixtures: a KMS client on the shared emulator and a fresh key per test."""

from __future__ import annotations
