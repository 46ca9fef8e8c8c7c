// Every role assignment, named deterministically (guid of scope, principal, role), for two
// principals: the app's user-assigned identity, and the developer running azd
// (AZURE_PRINCIPAL_ID) so that a local run with AZURE_CREDENTIAL_KIND=developer can reach the
// same data and vault. Shape of Microsoft's quickstart (functions-quickstart-python-http-azd
// infra/app/rbac.bicep).
param storageAccountName string
param vaultName string
param applicationInsightsName string
param identityPrincipalId string
@description('Object id of the developer; empty: no developer roles.')
param developerPrincipalId string = ''
param developerPrincipalType string = 'User'
@allowed([
  'secret'
  'certificate'
  'federated'
])
@description('The app credential kind: Key Vault Certificate User is granted only for certificate.')
param credentialKind string = 'secret'

// Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // host: blobs and leases; app: incidents, state
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // defender-ingest, defender-hunting
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // DefenderIncidents, tenants, subscriptions
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // the client secret
  keyVaultCertificateUser: 'db79e9a7-68ee-4b58-9aeb-b90e7c24fcba' // the certificate, with its key
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // developer: stores the client secret
  keyVaultCertificatesOfficer: 'a4417e6f-fecd-4de8-b567-7b0420556985' // developer: makes the certificate
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Application Insights without local auth
}

var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]
var vaultRoles = concat([roles.keyVaultSecretsUser], (credentialKind == 'certificate') ? [roles.keyVaultCertificateUser] : [])
var insightsRoles = [
  roles.monitoringMetricsPublisher
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The app's identity, then (when AZURE_PRINCIPAL_ID is set) the developer: the same roles.
var withDeveloper = !empty(developerPrincipalId)
var developerStorageRoles = withDeveloper ? storageRoles : []
// The developer also puts the app's credential into the vault (infra/entra/setup_app.py
// --store-secret / --store-certificate), so gets the officer role of the chosen kind on top.
var developerVaultWriter = (credentialKind == 'certificate') ? roles.keyVaultCertificatesOfficer : roles.keyVaultSecretsOfficer
var developerVaultRoles = withDeveloper ? concat(vaultRoles, (credentialKind == 'federated') ? [] : [developerVaultWriter]) : []
var developerInsightsRoles = withDeveloper ? insightsRoles : []

resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, identityPrincipalId, role)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource vaultRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in vaultRoles: {
  name: guid(vault.id, identityPrincipalId, role)
  scope: vault
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource insightsRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in insightsRoles: {
  name: guid(insights.id, identityPrincipalId, role)
  scope: insights
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource developerStorageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in developerStorageRoles: {
  name: guid(storage.id, developerPrincipalId, role)
  scope: storage
  properties: {
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource developerVaultRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in developerVaultRoles: {
  name: guid(vault.id, developerPrincipalId, role)
  scope: vault
  properties: {
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource developerInsightsRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in developerInsightsRoles: {
  name: guid(insights.id, developerPrincipalId, role)
  scope: insights
  properties: {
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]
