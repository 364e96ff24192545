"""Retiring key versions: the shred state machine (disable, soak, destroy, confirm) and its report,
undoing a scheduled destruction, tenant crypto-erasure with its proof, audited rotation."""
