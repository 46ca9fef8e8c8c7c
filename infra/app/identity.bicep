// The app's user-assigned managed identity: one identity for host storage, data, Key Vault,
// Application Insights and (credentialKind federated) the Defender app's federated credential.
// User-assigned because a managed identity works as a federated identity credential only when
// it is user-assigned (entra-docs workload-identity-federation-config-app-trust-managed-identity.md),
// and because it exists before the site, so role assignments are in place at first start.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output name string = identity.name
output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
