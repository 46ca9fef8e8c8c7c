// The Key Vault holding the Defender app's credential (a client secret or a certificate; none
// with credentialKind federated). RBAC only: no access policies.
param name string
param location string
param tags object
param enablePurgeProtection bool = true
param softDeleteRetentionInDays int
param vnetEnabled bool

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_189:public network access stays on unless vnetEnabled (then it is Disabled): without a VNet the Flex Consumption app has no fixed outbound address to allow; access is Entra ID + RBAC only
  //checkov:skip=CKV_AZURE_110:purge protection is on by default (main.bicep enablePurgeProtection = true, asserted by tests/infra); the `? true : null` form is needed because ARM refuses false, and checkov cannot evaluate it
  //checkov:skip=CKV_AZURE_42:same expression: soft delete is always on and purge protection on by default
  //checkov:skip=CKV_AZURE_109:same reason: the firewall denies by default when vnetEnabled; without a VNet there is no address range to allow
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // ARM refuses `false` here once set, and takes `null` as "leave it off"
    // (https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview#purge-protection)
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
    }
  }
}

output name string = vault.name
output id string = vault.id
// vaultUri is `https://<name>${environment().suffixes.keyvaultDns}/`, so it is right in every
// cloud (vault.azure.net, vault.usgovcloudapi.net); the app wants it without the slash.
output uri string = 'https://${vault.name}${environment().suffixes.keyvaultDns}'
