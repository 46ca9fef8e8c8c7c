"""The credentials wing: the app's credential from Key Vault and MSAL token providers."""
