// Defender Bridge: everything one deployment needs, identity-based end to end.
//
// Deploy with `azd up` (azure.yaml; parameters from main.parameters.json, which maps azd
// environment values) or `az deployment sub create -l <region> -f infra/main.bicep -p ...`.
// The shape follows Microsoft's azd quickstart for Python on Flex Consumption
// (Azure-Samples/functions-quickstart-python-http-azd: infra/main.bicep, infra/app/api.bicep,
// infra/app/rbac.bicep, infra/app/vnet.bicep, infra/app/storage-PrivateEndpoint.bicep,
// infra/main.parameters.json), with one deliberate difference: the resources are declared here
// (infra/app/*.bicep) instead of referenced as Azure Verified Modules (br/public:avm/...).
// Why: see infra/README.md. In short, a registry module is opaque to checkov and to the pycep
// structure tests (they would see a module call, not the storage account, the vault or the site
// and their security properties), and it cannot be resolved on a machine without the registry.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment (AZURE_ENV_NAME): names the resource group and seeds resource names.')
param environmentName string

// Regions that offer the Flex Consumption plan, as listed by Microsoft's quickstart
// (functions-quickstart-python-http-azd infra/main.bicep, 2025-11) and
// `az functionapp list-flexconsumption-locations`; plus the US Government regions, so the same
// template deploys to Azure Government (check there with the same command after
// `az cloud set --name AzureUSGovernment`: ARM refuses the plan where Flex is not offered yet).
@minLength(1)
@description('Region of every resource (AZURE_LOCATION). Must offer Flex Consumption.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
  'usgovarizona'
  'usgovtexas'
  'usgovvirginia'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the developer running azd (AZURE_PRINCIPAL_ID): gets the same data roles as the app, for AZURE_CREDENTIAL_KIND=developer. Empty: none.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Kind of principalId (AZURE_PRINCIPAL_TYPE): User for a person, ServicePrincipal for a pipeline.')
param principalType string = 'User'

@description('Tenant id where the Defender app registration lives (DEFENDER_TENANT_ID). Empty: the tenant of this deployment.')
param defenderTenantId string = ''

@minLength(36)
@maxLength(36)
@description('Client id of the Defender app registration (DEFENDER_CLIENT_ID); infra/entra/setup_app.py creates it.')
param defenderClientId string

@allowed([
  'graph'
  'legacy'
])
@description('Defender API surface (DEFENDER_API): Microsoft Graph security, or the legacy api.security.microsoft.com (retiring 2027-02-01).')
param defenderApi string = 'graph'

@allowed([
  'public'
  'gcc'
  'gcchigh'
  'dod'
])
@description('National cloud of the Defender tenants (DEFENDER_CLOUD): picks the Entra, Graph and legacy API hosts.')
param defenderCloud string = 'public'

@description('Comma list of features whose permissions `check` verifies (DEFENDER_FEATURES): ingest, update, hunting.')
param defenderFeatures string = 'ingest'

@allowed([
  'secret'
  'certificate'
  'federated'
])
@description('How the app proves itself to Entra (DEFENDER_CREDENTIAL_KIND): a secret or a certificate in Key Vault, or the user-assigned identity as a federated credential.')
param credentialKind string = 'secret'

@description('Key Vault secret holding the client secret (DEFENDER_CLIENT_SECRET_NAME), for credentialKind secret.')
param clientSecretName string = 'defender-client-secret'

@description('Key Vault certificate of the app (DEFENDER_CERTIFICATE_NAME), for credentialKind certificate; empty: defender-certificate, the name infra/entra/setup_app.py uses.')
param certificateName string = ''

@description('Comma-separated customer tenant ids to ingest (INGEST_TENANTS, partner use); empty: the home tenant and the tenant registry table.')
param ingestTenants string = ''

@description('NCRONTAB schedule (six fields) of the ingestion timer (INGEST_SCHEDULE).')
param ingestSchedule string = '0 */5 * * * *'

@allowed([
  'entra'
  'key'
])
@description('How HTTP callers prove who they are (API_AUTH_MODE): entra, an Entra ID token for the API validated by the app, with App Service Authentication in front (the default); key, the function key alone with every role in every tenant (one team only).')
param apiAuthMode string = 'entra'

@description('Application ID URI of the app registration (API_APP_ID_URI), the audience of callers\' tokens; empty: api://<DEFENDER_CLIENT_ID>, what infra/entra/setup_app.py sets.')
param apiAppIdUri string = ''

@description('Put the app, storage and vault behind a virtual network with private endpoints (VNET_ENABLED).')
param vnetEnabled bool = false

// Default on: a vault holding the app's credential should not be purgeable by anyone who can
// delete it (and checkov CKV_AZURE_42/110 ask for it). The price: a deleted vault keeps its name
// for the retention period and cannot be purged, so `azd down --purge` then `azd up` in the same
// environment would collide. vaultNameSuffix (or a new environment name) gives a fresh name; a
// throwaway development environment can set KEY_VAULT_PURGE_PROTECTION=false instead.
// Once on, Azure never lets it be turned off again for that vault.
@description('Key Vault purge protection (KEY_VAULT_PURGE_PROTECTION); default true. See the README before turning it off.')
param enablePurgeProtection bool = true

@minValue(7)
@maxValue(90)
@description('Days a deleted vault and its secrets stay recoverable (KEY_VAULT_RETENTION_DAYS).')
param softDeleteRetentionInDays int = 90

@maxLength(4)
@description('Extra characters in the vault name (KEY_VAULT_NAME_SUFFIX), to re-create a deployment while the old purge-protected vault still holds its name.')
param vaultNameSuffix string = ''

@allowed([
  2048
  4096
])
@description('Memory of each Flex Consumption instance, MB (FUNCTION_INSTANCE_MEMORY_MB).')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Most instances the app scales out to (FUNCTION_MAX_INSTANCES).')
param maximumInstanceCount int = 40

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var homeTenantId = empty(defenderTenantId) ? tenant().tenantId : defenderTenantId
// the app refuses credentialKind certificate without a certificate name; give it the script's
var appCertificateName = ((credentialKind == 'certificate') && empty(certificateName)) ? 'defender-certificate' : certificateName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module network 'app/vnet.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    vnetEnabled: vnetEnabled
  }
}

module vault 'app/vault.bicep' = {
  name: 'vault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}${toLower(vaultNameSuffix)}'
    location: location
    tags: tags
    enablePurgeProtection: enablePurgeProtection
    softDeleteRetentionInDays: softDeleteRetentionInDays
    vnetEnabled: vnetEnabled
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module privateEndpoints 'app/private-endpoints.bicep' = if (vnetEnabled) {
  name: 'private-endpoints'
  scope: rg
  params: {
    location: location
    tags: tags
    virtualNetworkName: 'vnet-${resourceToken}'
    storageAccountName: storage.outputs.name
    vaultName: vault.outputs.name
  }
  dependsOn: [
    network
  ]
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityName: identity.outputs.name
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    vaultName: vault.outputs.name
    appSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    defenderTenantId: homeTenantId
    defenderClientId: defenderClientId
    defenderApi: defenderApi
    defenderCloud: defenderCloud
    defenderFeatures: defenderFeatures
    credentialKind: credentialKind
    clientSecretName: clientSecretName
    certificateName: appCertificateName
    ingestTenants: ingestTenants
    ingestSchedule: ingestSchedule
    apiAuthMode: apiAuthMode
    apiAppIdUri: apiAppIdUri
  }
}

// App Service Authentication in front of the HTTP API, with API_AUTH_MODE=entra only
module auth 'app/auth.bicep' = if (apiAuthMode == 'entra') {
  name: 'auth'
  scope: rg
  params: {
    siteName: api.outputs.name
    clientId: defenderClientId
    tenantId: homeTenantId
    appIdUri: api.outputs.appIdUri
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    vaultName: vault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
    credentialKind: credentialKind
  }
}

// azd stores every output in the environment (.azure/<env>/.env): `azd env get-values` then
// gives the settings a local run needs (AZURE_CREDENTIAL_KIND=developer against these resources).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output FUNCTION_APP_HOST string = api.outputs.defaultHostName
output CONSENT_REDIRECT_URI string = 'https://${api.outputs.defaultHostName}/api/consent/callback'
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_USER_ASSIGNED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output KEY_VAULT_URL string = vault.outputs.uri
output KEY_VAULT_NAME string = vault.outputs.name
output DATA_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output DEFENDER_TENANT_ID string = homeTenantId
output DEFENDER_CLOUD string = defenderCloud
output DEFENDER_API string = defenderApi
output API_AUTH_MODE string = apiAuthMode
output API_APP_ID_URI string = api.outputs.appIdUri
