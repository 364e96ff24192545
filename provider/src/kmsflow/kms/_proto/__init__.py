"""Generated protobuf messages of kmsflow's lean KMS data path (``scripts/gen_kms_protos.sh``).

Google's Cloud KMS request/response messages for the data-plane calls, renamed into the package
``kmsflow.kms.dataplane.v1`` so they can live beside ``google-cloud-kms``'s own in one process.
"""
