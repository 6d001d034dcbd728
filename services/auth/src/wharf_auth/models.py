"""Request and answer shapes of auth's RPC operations."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

GrantableRole = Literal["admin", "member"]
Role = Literal["admin", "member", "ops"]
SCOPE_PATTERN = r"^[a-z][a-z-]*:[a-z][a-z-]*$"

Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Scope = Annotated[str, Field(max_length=64, pattern=SCOPE_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Caller(BaseModel):
    """Who calls, as the gateway read it from a verified credential."""

    tenant: uuid.UUID
    subject: str
    roles: list[str] = []
    scopes: list[str] = []


class CreateTenant(_Model):
    """A new tenant and its first admin user."""

    name: str = Field(min_length=1, max_length=200)
    admin_email: Email
    admin_password: str = Field(min_length=12, max_length=1024)


class TokenRequest(_Model):
    """Email and password, exchanged for a token pair."""

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(_Model):
    """A refresh token to rotate or revoke."""

    refresh_token: str = Field(min_length=1, max_length=200)


class CreateUser(_Model):
    """A user to add to the caller's tenant."""

    email: Email
    password: str = Field(min_length=12, max_length=1024)
    roles: list[GrantableRole] = Field(default=["member"], min_length=1)


class CreateApiKey(_Model):
    """A machine credential of the caller's tenant."""

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=50)


class ApiKeyRef(_Model):
    """Names one API key."""

    id: uuid.UUID


class VerifyApiKey(_Model):
    """An API key as presented by a client."""

    key: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    """An access token and the refresh token that renews it."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
