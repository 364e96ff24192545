import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtectionLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTECTION_LEVEL_UNSPECIFIED: _ClassVar[ProtectionLevel]
    SOFTWARE: _ClassVar[ProtectionLevel]
    HSM: _ClassVar[ProtectionLevel]
    EXTERNAL: _ClassVar[ProtectionLevel]
    EXTERNAL_VPC: _ClassVar[ProtectionLevel]
    HSM_SINGLE_TENANT: _ClassVar[ProtectionLevel]
PROTECTION_LEVEL_UNSPECIFIED: ProtectionLevel
SOFTWARE: ProtectionLevel
HSM: ProtectionLevel
EXTERNAL: ProtectionLevel
EXTERNAL_VPC: ProtectionLevel
HSM_SINGLE_TENANT: ProtectionLevel

class AsymmetricDecryptRequest(_message.Message):
    __slots__ = ("name", "ciphertext", "ciphertext_crc32c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    name: str
    ciphertext: bytes
    ciphertext_crc32c: _wrappers_pb2.Int64Value
    def __init__(self, name: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., ciphertext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class AsymmetricDecryptResponse(_message.Message):
    __slots__ = ("plaintext", "plaintext_crc32c", "verified_ciphertext_crc32c", "protection_level")
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_CIPHERTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    plaintext_crc32c: _wrappers_pb2.Int64Value
    verified_ciphertext_crc32c: bool
    protection_level: ProtectionLevel
    def __init__(self, plaintext: _Optional[bytes] = ..., plaintext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., verified_ciphertext_crc32c: _Optional[bool] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ...) -> None: ...

class AsymmetricSignRequest(_message.Message):
    __slots__ = ("name", "digest", "digest_crc32c", "data", "data_crc32c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_CRC32C_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_CRC32C_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: Digest
    digest_crc32c: _wrappers_pb2.Int64Value
    data: bytes
    data_crc32c: _wrappers_pb2.Int64Value
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[_Union[Digest, _Mapping]] = ..., digest_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., data: _Optional[bytes] = ..., data_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class AsymmetricSignResponse(_message.Message):
    __slots__ = ("signature", "signature_crc32c", "verified_digest_crc32c", "name", "verified_data_crc32c", "protection_level")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_CRC32C_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_DIGEST_CRC32C_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_DATA_CRC32C_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    signature_crc32c: _wrappers_pb2.Int64Value
    verified_digest_crc32c: bool
    name: str
    verified_data_crc32c: bool
    protection_level: ProtectionLevel
    def __init__(self, signature: _Optional[bytes] = ..., signature_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., verified_digest_crc32c: _Optional[bool] = ..., name: _Optional[str] = ..., verified_data_crc32c: _Optional[bool] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ...) -> None: ...

class ChecksummedData(_message.Message):
    __slots__ = ("data", "crc32c_checksum")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    crc32c_checksum: _wrappers_pb2.Int64Value
    def __init__(self, data: _Optional[bytes] = ..., crc32c_checksum: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class CryptoKeyVersion(_message.Message):
    __slots__ = ("name", "state", "protection_level", "algorithm", "attestation", "create_time", "generate_time", "destroy_time", "destroy_event_time", "import_job", "import_time", "import_failure_reason", "generation_failure_reason", "external_destruction_failure_reason", "external_protection_level_options", "reimport_eligible", "trusted_wrapping_enabled", "hsm_trusted")
    class CryptoKeyVersionAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        GOOGLE_SYMMETRIC_ENCRYPTION: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_128_GCM: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_256_GCM: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_128_CBC: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_256_CBC: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_128_CTR: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_256_CTR: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PSS_2048_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PSS_3072_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PSS_4096_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PSS_4096_SHA512: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PKCS1_2048_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PKCS1_3072_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PKCS1_4096_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_PKCS1_4096_SHA512: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_RAW_PKCS1_2048: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_RAW_PKCS1_3072: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_SIGN_RAW_PKCS1_4096: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_2048_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_3072_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_4096_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_4096_SHA512: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_2048_SHA1: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_3072_SHA1: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        RSA_DECRYPT_OAEP_4096_SHA1: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        EC_SIGN_P256_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        EC_SIGN_P384_SHA384: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        EC_SIGN_SECP256K1_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        EC_SIGN_ED25519: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        HMAC_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        HMAC_SHA1: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        HMAC_SHA384: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        HMAC_SHA512: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        HMAC_SHA224: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        EXTERNAL_SYMMETRIC_ENCRYPTION: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        ML_KEM_768: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        ML_KEM_1024: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        KEM_XWING: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_ML_DSA_44: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_ML_DSA_65: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_ML_DSA_87: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_SLH_DSA_SHA2_128S: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_HASH_SLH_DSA_SHA2_128S_SHA256: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_ML_DSA_44_EXTERNAL_MU: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_ML_DSA_65_EXTERNAL_MU: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        PQ_SIGN_ML_DSA_87_EXTERNAL_MU: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
        AES_256_KWP: _ClassVar[CryptoKeyVersion.CryptoKeyVersionAlgorithm]
    CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    GOOGLE_SYMMETRIC_ENCRYPTION: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_128_GCM: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_256_GCM: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_128_CBC: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_256_CBC: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_128_CTR: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_256_CTR: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PSS_2048_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PSS_3072_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PSS_4096_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PSS_4096_SHA512: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PKCS1_2048_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PKCS1_3072_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PKCS1_4096_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_PKCS1_4096_SHA512: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_RAW_PKCS1_2048: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_RAW_PKCS1_3072: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_SIGN_RAW_PKCS1_4096: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_2048_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_3072_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_4096_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_4096_SHA512: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_2048_SHA1: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_3072_SHA1: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    RSA_DECRYPT_OAEP_4096_SHA1: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    EC_SIGN_P256_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    EC_SIGN_P384_SHA384: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    EC_SIGN_SECP256K1_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    EC_SIGN_ED25519: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    HMAC_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    HMAC_SHA1: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    HMAC_SHA384: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    HMAC_SHA512: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    HMAC_SHA224: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    EXTERNAL_SYMMETRIC_ENCRYPTION: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    ML_KEM_768: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    ML_KEM_1024: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    KEM_XWING: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_ML_DSA_44: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_ML_DSA_65: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_ML_DSA_87: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_SLH_DSA_SHA2_128S: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_HASH_SLH_DSA_SHA2_128S_SHA256: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_ML_DSA_44_EXTERNAL_MU: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_ML_DSA_65_EXTERNAL_MU: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    PQ_SIGN_ML_DSA_87_EXTERNAL_MU: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    AES_256_KWP: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    class CryptoKeyVersionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CRYPTO_KEY_VERSION_STATE_UNSPECIFIED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        PENDING_GENERATION: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        ENABLED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        DISABLED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        DESTROYED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        DESTROY_SCHEDULED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        PENDING_IMPORT: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        IMPORT_FAILED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        GENERATION_FAILED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        PENDING_EXTERNAL_DESTRUCTION: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
        EXTERNAL_DESTRUCTION_FAILED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionState]
    CRYPTO_KEY_VERSION_STATE_UNSPECIFIED: CryptoKeyVersion.CryptoKeyVersionState
    PENDING_GENERATION: CryptoKeyVersion.CryptoKeyVersionState
    ENABLED: CryptoKeyVersion.CryptoKeyVersionState
    DISABLED: CryptoKeyVersion.CryptoKeyVersionState
    DESTROYED: CryptoKeyVersion.CryptoKeyVersionState
    DESTROY_SCHEDULED: CryptoKeyVersion.CryptoKeyVersionState
    PENDING_IMPORT: CryptoKeyVersion.CryptoKeyVersionState
    IMPORT_FAILED: CryptoKeyVersion.CryptoKeyVersionState
    GENERATION_FAILED: CryptoKeyVersion.CryptoKeyVersionState
    PENDING_EXTERNAL_DESTRUCTION: CryptoKeyVersion.CryptoKeyVersionState
    EXTERNAL_DESTRUCTION_FAILED: CryptoKeyVersion.CryptoKeyVersionState
    class CryptoKeyVersionView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CRYPTO_KEY_VERSION_VIEW_UNSPECIFIED: _ClassVar[CryptoKeyVersion.CryptoKeyVersionView]
        FULL: _ClassVar[CryptoKeyVersion.CryptoKeyVersionView]
    CRYPTO_KEY_VERSION_VIEW_UNSPECIFIED: CryptoKeyVersion.CryptoKeyVersionView
    FULL: CryptoKeyVersion.CryptoKeyVersionView
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESTROY_TIME_FIELD_NUMBER: _ClassVar[int]
    DESTROY_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    IMPORT_JOB_FIELD_NUMBER: _ClassVar[int]
    IMPORT_TIME_FIELD_NUMBER: _ClassVar[int]
    IMPORT_FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_DESTRUCTION_FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_PROTECTION_LEVEL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REIMPORT_ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_WRAPPING_ENABLED_FIELD_NUMBER: _ClassVar[int]
    HSM_TRUSTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: CryptoKeyVersion.CryptoKeyVersionState
    protection_level: ProtectionLevel
    algorithm: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    attestation: KeyOperationAttestation
    create_time: _timestamp_pb2.Timestamp
    generate_time: _timestamp_pb2.Timestamp
    destroy_time: _timestamp_pb2.Timestamp
    destroy_event_time: _timestamp_pb2.Timestamp
    import_job: str
    import_time: _timestamp_pb2.Timestamp
    import_failure_reason: str
    generation_failure_reason: str
    external_destruction_failure_reason: str
    external_protection_level_options: ExternalProtectionLevelOptions
    reimport_eligible: bool
    trusted_wrapping_enabled: bool
    hsm_trusted: bool
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[CryptoKeyVersion.CryptoKeyVersionState, str]] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ..., algorithm: _Optional[_Union[CryptoKeyVersion.CryptoKeyVersionAlgorithm, str]] = ..., attestation: _Optional[_Union[KeyOperationAttestation, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., destroy_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., destroy_event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., import_job: _Optional[str] = ..., import_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., import_failure_reason: _Optional[str] = ..., generation_failure_reason: _Optional[str] = ..., external_destruction_failure_reason: _Optional[str] = ..., external_protection_level_options: _Optional[_Union[ExternalProtectionLevelOptions, _Mapping]] = ..., reimport_eligible: _Optional[bool] = ..., trusted_wrapping_enabled: _Optional[bool] = ..., hsm_trusted: _Optional[bool] = ...) -> None: ...

class DecapsulateRequest(_message.Message):
    __slots__ = ("name", "ciphertext", "ciphertext_crc32c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    name: str
    ciphertext: bytes
    ciphertext_crc32c: _wrappers_pb2.Int64Value
    def __init__(self, name: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., ciphertext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class DecapsulateResponse(_message.Message):
    __slots__ = ("name", "shared_secret", "shared_secret_crc32c", "verified_ciphertext_crc32c", "protection_level")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARED_SECRET_FIELD_NUMBER: _ClassVar[int]
    SHARED_SECRET_CRC32C_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_CIPHERTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    shared_secret: bytes
    shared_secret_crc32c: int
    verified_ciphertext_crc32c: bool
    protection_level: ProtectionLevel
    def __init__(self, name: _Optional[str] = ..., shared_secret: _Optional[bytes] = ..., shared_secret_crc32c: _Optional[int] = ..., verified_ciphertext_crc32c: _Optional[bool] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ("name", "ciphertext", "additional_authenticated_data", "ciphertext_crc32c", "additional_authenticated_data_crc32c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_AUTHENTICATED_DATA_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_AUTHENTICATED_DATA_CRC32C_FIELD_NUMBER: _ClassVar[int]
    name: str
    ciphertext: bytes
    additional_authenticated_data: bytes
    ciphertext_crc32c: _wrappers_pb2.Int64Value
    additional_authenticated_data_crc32c: _wrappers_pb2.Int64Value
    def __init__(self, name: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., additional_authenticated_data: _Optional[bytes] = ..., ciphertext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., additional_authenticated_data_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ("plaintext", "plaintext_crc32c", "used_primary", "protection_level")
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    USED_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    plaintext_crc32c: _wrappers_pb2.Int64Value
    used_primary: bool
    protection_level: ProtectionLevel
    def __init__(self, plaintext: _Optional[bytes] = ..., plaintext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., used_primary: _Optional[bool] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ...) -> None: ...

class Digest(_message.Message):
    __slots__ = ("sha256", "sha384", "sha512", "external_mu")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SHA384_FIELD_NUMBER: _ClassVar[int]
    SHA512_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_MU_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    sha384: bytes
    sha512: bytes
    external_mu: bytes
    def __init__(self, sha256: _Optional[bytes] = ..., sha384: _Optional[bytes] = ..., sha512: _Optional[bytes] = ..., external_mu: _Optional[bytes] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ("name", "plaintext", "additional_authenticated_data", "plaintext_crc32c", "additional_authenticated_data_crc32c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_AUTHENTICATED_DATA_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_AUTHENTICATED_DATA_CRC32C_FIELD_NUMBER: _ClassVar[int]
    name: str
    plaintext: bytes
    additional_authenticated_data: bytes
    plaintext_crc32c: _wrappers_pb2.Int64Value
    additional_authenticated_data_crc32c: _wrappers_pb2.Int64Value
    def __init__(self, name: _Optional[str] = ..., plaintext: _Optional[bytes] = ..., additional_authenticated_data: _Optional[bytes] = ..., plaintext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., additional_authenticated_data_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ("name", "ciphertext", "ciphertext_crc32c", "verified_plaintext_crc32c", "verified_additional_authenticated_data_crc32c", "protection_level")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_PLAINTEXT_CRC32C_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_ADDITIONAL_AUTHENTICATED_DATA_CRC32C_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    ciphertext: bytes
    ciphertext_crc32c: _wrappers_pb2.Int64Value
    verified_plaintext_crc32c: bool
    verified_additional_authenticated_data_crc32c: bool
    protection_level: ProtectionLevel
    def __init__(self, name: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., ciphertext_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., verified_plaintext_crc32c: _Optional[bool] = ..., verified_additional_authenticated_data_crc32c: _Optional[bool] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ...) -> None: ...

class ExternalProtectionLevelOptions(_message.Message):
    __slots__ = ("external_key_uri", "ekm_connection_key_path")
    EXTERNAL_KEY_URI_FIELD_NUMBER: _ClassVar[int]
    EKM_CONNECTION_KEY_PATH_FIELD_NUMBER: _ClassVar[int]
    external_key_uri: str
    ekm_connection_key_path: str
    def __init__(self, external_key_uri: _Optional[str] = ..., ekm_connection_key_path: _Optional[str] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("name", "public_key_format")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    name: str
    public_key_format: PublicKey.PublicKeyFormat
    def __init__(self, name: _Optional[str] = ..., public_key_format: _Optional[_Union[PublicKey.PublicKeyFormat, str]] = ...) -> None: ...

class KeyOperationAttestation(_message.Message):
    __slots__ = ("format", "content", "cert_chains")
    class AttestationFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ATTESTATION_FORMAT_UNSPECIFIED: _ClassVar[KeyOperationAttestation.AttestationFormat]
        CAVIUM_V1_COMPRESSED: _ClassVar[KeyOperationAttestation.AttestationFormat]
        CAVIUM_V2_COMPRESSED: _ClassVar[KeyOperationAttestation.AttestationFormat]
    ATTESTATION_FORMAT_UNSPECIFIED: KeyOperationAttestation.AttestationFormat
    CAVIUM_V1_COMPRESSED: KeyOperationAttestation.AttestationFormat
    CAVIUM_V2_COMPRESSED: KeyOperationAttestation.AttestationFormat
    class CertificateChains(_message.Message):
        __slots__ = ("cavium_certs", "google_card_certs", "google_partition_certs")
        CAVIUM_CERTS_FIELD_NUMBER: _ClassVar[int]
        GOOGLE_CARD_CERTS_FIELD_NUMBER: _ClassVar[int]
        GOOGLE_PARTITION_CERTS_FIELD_NUMBER: _ClassVar[int]
        cavium_certs: _containers.RepeatedScalarFieldContainer[str]
        google_card_certs: _containers.RepeatedScalarFieldContainer[str]
        google_partition_certs: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, cavium_certs: _Optional[_Iterable[str]] = ..., google_card_certs: _Optional[_Iterable[str]] = ..., google_partition_certs: _Optional[_Iterable[str]] = ...) -> None: ...
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CERT_CHAINS_FIELD_NUMBER: _ClassVar[int]
    format: KeyOperationAttestation.AttestationFormat
    content: bytes
    cert_chains: KeyOperationAttestation.CertificateChains
    def __init__(self, format: _Optional[_Union[KeyOperationAttestation.AttestationFormat, str]] = ..., content: _Optional[bytes] = ..., cert_chains: _Optional[_Union[KeyOperationAttestation.CertificateChains, _Mapping]] = ...) -> None: ...

class PublicKey(_message.Message):
    __slots__ = ("pem", "algorithm", "pem_crc32c", "name", "protection_level", "public_key_format", "public_key")
    class PublicKeyFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUBLIC_KEY_FORMAT_UNSPECIFIED: _ClassVar[PublicKey.PublicKeyFormat]
        PEM: _ClassVar[PublicKey.PublicKeyFormat]
        DER: _ClassVar[PublicKey.PublicKeyFormat]
        NIST_PQC: _ClassVar[PublicKey.PublicKeyFormat]
        XWING_RAW_BYTES: _ClassVar[PublicKey.PublicKeyFormat]
    PUBLIC_KEY_FORMAT_UNSPECIFIED: PublicKey.PublicKeyFormat
    PEM: PublicKey.PublicKeyFormat
    DER: PublicKey.PublicKeyFormat
    NIST_PQC: PublicKey.PublicKeyFormat
    XWING_RAW_BYTES: PublicKey.PublicKeyFormat
    PEM_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PEM_CRC32C_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    pem: str
    algorithm: CryptoKeyVersion.CryptoKeyVersionAlgorithm
    pem_crc32c: _wrappers_pb2.Int64Value
    name: str
    protection_level: ProtectionLevel
    public_key_format: PublicKey.PublicKeyFormat
    public_key: ChecksummedData
    def __init__(self, pem: _Optional[str] = ..., algorithm: _Optional[_Union[CryptoKeyVersion.CryptoKeyVersionAlgorithm, str]] = ..., pem_crc32c: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., name: _Optional[str] = ..., protection_level: _Optional[_Union[ProtectionLevel, str]] = ..., public_key_format: _Optional[_Union[PublicKey.PublicKeyFormat, str]] = ..., public_key: _Optional[_Union[ChecksummedData, _Mapping]] = ...) -> None: ...
