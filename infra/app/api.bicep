// The Function app (Flex Consumption, Linux, Python) and its plan, with every app setting the
// code reads (README "Settings"; tests/infra checks the list against shared/settings.py).
// Shape of Microsoft's quickstart (functions-quickstart-python-http-azd infra/app/api.bicep),
// as a local Microsoft.Web/sites resource instead of the AVM web/site module (infra/README.md).
param name string
param planName string
param location string
param tags object
param identityName string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param vaultName string
@description('Subnet for outbound VNet integration; empty: none.')
param appSubnetId string = ''
param instanceMemoryMB int
param maximumInstanceCount int
@description('Python version of the worker (Flex Consumption offers 3.10-3.12 at the time of writing).')
param pythonVersion string = '3.11'

param defenderTenantId string
param defenderClientId string
param defenderApi string
param defenderCloud string
param defenderFeatures string
param credentialKind string
param clientSecretName string
param certificateName string
param ingestTenants string
param ingestSchedule string
@allowed([
  'entra'
  'key'
])
param apiAuthMode string
@description('Application ID URI of the app registration; empty: api://<defenderClientId>.')
param apiAppIdUri string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Endpoints from the cloud this template is deployed to (core.windows.net in Azure,
// core.usgovcloudapi.net in Azure Government), never spelled out.
var storageSuffix = environment().suffixes.storage
var blobEndpoint = 'https://${storageAccountName}.blob.${storageSuffix}'
var queueEndpoint = 'https://${storageAccountName}.queue.${storageSuffix}'
var tableEndpoint = 'https://${storageAccountName}.table.${storageSuffix}'
var vaultUrl = 'https://${vaultName}${environment().suffixes.keyvaultDns}'
var appIdUri = empty(apiAppIdUri) ? 'api://${defenderClientId}' : apiAppIdUri

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:a Flex Consumption plan scales from zero per function; zone redundancy there needs always-ready instances and a region that offers it, a cost this timer/webhook app does not need
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222:the HTTP API is called by webhooks and Logic Apps from outside; callers are authenticated by Entra tokens the app validates, behind App Service Authentication (app/auth.bicep), and vnetEnabled isolates storage and Key Vault
  //checkov:skip=CKV_AZURE_17:incoming client certificates (mTLS) cannot be presented by Logic Apps connectors or webhook senders; callers authenticate with Entra tokens instead
  //checkov:skip=CKV_AZURE_213:App Service health check pings need an instance that is always on; a Flex Consumption app scales to zero. GET /api/health exists for an external probe
  //checkov:skip=CKV_AZURE_212:Flex Consumption creates instances on demand; a minimum would be billed always-ready capacity
  // Sites API 2024-04-01: the newest the Azure Government regions register (Azure/azure-cli#31943)
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // The host's own storage, identity-based, by service URI: `__accountName` is not valid
        // in sovereign clouds, the service URIs are (https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: blobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: queueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: tableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        // Application Insights with Entra authentication (local auth is off), and
        // OpenTelemetry: host.json has "telemetryMode": "OpenTelemetry"; this setting lets the
        // Python worker stream its own OpenTelemetry logs instead of the host duplicating them
        // (https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto?pivot=programming-language-python).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: insights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
        }
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        // Threads of the Python worker for synchronous invocations (unset: min(32, CPUs + 4)):
        // both queue functions' batchSize + newBatchThreshold (8 + 4), the timer and an HTTP
        // call make 26, and 32 is the documented maximum (tests/functions checks the sum;
        // sources in docs/functions-host.md).
        {
          name: 'PYTHON_THREADPOOL_THREAD_COUNT'
          value: '32'
        }
        // Defender Bridge settings (README "Settings")
        {
          name: 'AZURE_CLIENT_ID'
          value: identity.properties.clientId
        }
        {
          name: 'AZURE_CREDENTIAL_KIND'
          value: 'managed-identity'
        }
        {
          name: 'DEFENDER_TENANT_ID'
          value: defenderTenantId
        }
        {
          name: 'DEFENDER_CLIENT_ID'
          value: defenderClientId
        }
        {
          name: 'DEFENDER_API'
          value: defenderApi
        }
        {
          name: 'DEFENDER_CLOUD'
          value: defenderCloud
        }
        {
          name: 'DEFENDER_FEATURES'
          value: defenderFeatures
        }
        {
          name: 'DEFENDER_CREDENTIAL_KIND'
          value: credentialKind
        }
        {
          name: 'DEFENDER_CLIENT_SECRET_NAME'
          value: clientSecretName
        }
        {
          name: 'DEFENDER_CERTIFICATE_NAME'
          value: certificateName
        }
        {
          name: 'KEY_VAULT_URL'
          value: vaultUrl
        }
        {
          name: 'DATA_STORAGE_ACCOUNT_NAME'
          value: storageAccountName
        }
        {
          name: 'TENANT_REGISTRY_TABLE'
          value: 'DefenderTenants'
        }
        {
          name: 'INGEST_TENANTS'
          value: ingestTenants
        }
        {
          name: 'INGEST_SCHEDULE'
          value: ingestSchedule
        }
        // partner scale (issue 10): the queue trigger's identity-based connection to the data
        // account (function_app.py: connection="DATA_STORAGE"); the same account and identity
        // as the host's, so the ingest queue is the one the app writes
        {
          name: 'DATA_STORAGE__queueServiceUri'
          value: queueEndpoint
        }
        {
          name: 'DATA_STORAGE__credential'
          value: 'managedidentity'
        }
        {
          name: 'DATA_STORAGE__clientId'
          value: identity.properties.clientId
        }
        // who may call the HTTP API (README "Trust model", docs/http-auth.md)
        {
          name: 'API_AUTH_MODE'
          value: apiAuthMode
        }
        {
          name: 'API_APP_ID_URI'
          value: appIdUri
        }
      ]
    }
  }
}

// Basic (user name + password) publishing credentials off for FTP and SCM: deployments use
// Entra ID (azd, Core Tools and the Flex deployment container all do).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output appIdUri string = appIdUri
output defaultHostName string = functionApp.properties.defaultHostName
