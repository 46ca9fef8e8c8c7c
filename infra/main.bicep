// Defender Bridge: everything the Function app needs, identity-based end to end.
// Deploy with `azd up` (see azure.yaml) or `az deployment sub create -l <region> -f infra/main.bicep`.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment; used to name the resource group and resources.')
param environmentName string

@minLength(1)
@description('Azure region for every resource.')
param location string

@description('Tenant id where the Defender app registration lives (DEFENDER_TENANT_ID).')
param defenderTenantId string = subscription().tenantId

@description('Client id of the Defender app registration (DEFENDER_CLIENT_ID).')
param defenderClientId string

@allowed([
  'graph'
  'legacy'
])
@description('Defender API surface (DEFENDER_API).')
param defenderApi string = 'graph'

@description('Comma-separated customer tenant ids to ingest (INGEST_TENANTS); empty: the home tenant.')
param ingestTenants string = ''

@description('NCRONTAB schedule of ingestion (INGEST_SCHEDULE).')
param ingestSchedule string = '0 */5 * * * *'

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'app.bicep' = {
  name: 'defender-bridge-app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    defenderTenantId: defenderTenantId
    defenderClientId: defenderClientId
    defenderApi: defenderApi
    ingestTenants: ingestTenants
    ingestSchedule: ingestSchedule
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output KEY_VAULT_URL string = app.outputs.keyVaultUrl
output DATA_STORAGE_ACCOUNT_NAME string = app.outputs.storageAccountName
