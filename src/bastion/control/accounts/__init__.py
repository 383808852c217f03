"""Control-plane accounts: roles, password hashes, TOTP second factors, admin API tokens.

Pure functions and small types; the rows live in the store (:mod:`bastion.store.admins`,
:mod:`bastion.store.portal`, :mod:`bastion.store.websessions`).
"""
