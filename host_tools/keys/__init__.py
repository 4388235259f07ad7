"""The utility's vending keys in a PKCS#11 secure module (SoftHSM2 here, a hardware HSM in production):
where the module is, the token session, DKGA04 inside the module, and `meterkit keys init|import|list`."""
