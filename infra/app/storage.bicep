// One storage account for the Functions host (identity-based: no shared keys), the Flex
// deployment package and the app's data: the containers, queues and tables of the design
// (/api and ingestion read their names from shared/storage and shared/settings).
param name string
param location string
param tags object
param vnetEnabled bool

@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_ZRS'
  'Standard_GZRS'
])
@description('Replication. GRS by default: incidents are the product, and GRS exists in every region (ZRS does not).')
param sku string = 'Standard_GRS'

@description('Container of the Flex Consumption deployment package.')
param deploymentContainerName string = 'app-package'

// The design's storage layout (shared/storage/__init__.py, design.md "Storage layout") and the
// HTTP API's needs: hunting jobs are queued, webhook subscriptions are a table.
var containers = [
  deploymentContainerName
  'defender-incidents' // incident versions, gzip NDJSON, and quarantine/
  'defender-state' // watermarks, per-tenant locks (leases), write-ahead journal
  'defender-push-deadletter' // push deliveries that kept failing (python -m shared subscriptions redrive)
]
var queues = [
  'defender-ingest' // fans tenants out to the queue-triggered ingestion
  'defender-ingest-poison' // where the host moves a message after maxDequeueCount (host.json: 5)
  'defender-hunting' // advanced hunting jobs of POST /hunting
  'defender-hunting-poison'
  'defender-push' // push: changes recorded by ingestion, and deliveries waiting for a retry
  'defender-push-poison'
]
var tables = [
  'DefenderIncidents' // latest state of each incident
  'DefenderTenants' // tenant registry (TENANT_REGISTRY_TABLE)
  'DefenderSubscriptions' // webhook subscriptions of POST /subscriptions
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43:the name is 'st' + uniqueString(), 15 lowercase letters and digits; checkov cannot evaluate the expression
  //checkov:skip=CKV_AZURE_35:the firewall denies by default when vnetEnabled; without a VNet the Flex Consumption app has no fixed outbound address to allow, so access is Entra ID + RBAC only (no shared keys)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: sku
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false // every client (host, app, developer) uses Entra ID
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      // Without a VNet the app reaches storage from Flex Consumption's shared outbound
      // addresses, which no firewall rule can list: access is by Entra ID and RBAC only.
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource storageQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in queues: {
  parent: queueService
  name: queue
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tables: {
  parent: tableService
  name: table
}]

output name string = storage.name
output id string = storage.id
output deploymentContainerName string = deploymentContainerName
