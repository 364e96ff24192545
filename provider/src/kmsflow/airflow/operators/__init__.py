"""kmsflow operators: key rings, crypto keys, key versions, IAM, secret and artifact encryption."""

from kmsflow.airflow.operators.artifacts import DecryptArtifactOperator, EncryptArtifactOperator
from kmsflow.airflow.operators.base import KmsBaseOperator
from kmsflow.airflow.operators.crypto_key import CreateCryptoKeyOperator
from kmsflow.airflow.operators.iam import (
    GrantKmsRoleOperator,
    KmsIamDriftOperator,
    RevokeKmsRoleOperator,
    SetKmsIamOperator,
)
from kmsflow.airflow.operators.key_ring import CreateKeyRingOperator
from kmsflow.airflow.operators.secrets import EncryptSecretOperator
from kmsflow.airflow.operators.versions import (
    DestroyKeyVersionOperator,
    DisableKeyVersionOperator,
    EnableKeyVersionOperator,
    RestoreKeyVersionOperator,
    RotateKeyOperator,
    SetPrimaryVersionOperator,
)

__all__ = [
    "CreateCryptoKeyOperator",
    "CreateKeyRingOperator",
    "DecryptArtifactOperator",
    "DestroyKeyVersionOperator",
    "DisableKeyVersionOperator",
    "EnableKeyVersionOperator",
    "EncryptArtifactOperator",
    "EncryptSecretOperator",
    "GrantKmsRoleOperator",
    "KmsBaseOperator",
    "KmsIamDriftOperator",
    "RestoreKeyVersionOperator",
    "RevokeKmsRoleOperator",
    "RotateKeyOperator",
    "SetKmsIamOperator",
    "SetPrimaryVersionOperator",
]
