// Optional network isolation (vnetEnabled): private endpoints for the storage services the app
// and its host use (blob, queue, table) and for Key Vault, each with its private DNS zone linked
// to the VNet. Zone names come from environment(), so they are right in every cloud
// (privatelink.blob.core.windows.net / privatelink.blob.core.usgovcloudapi.net,
// privatelink.vaultcore.azure.net / privatelink.vaultcore.usgovcloudapi.net:
// https://learn.microsoft.com/azure/private-link/private-endpoint-dns).
// Same shape as Microsoft's quickstart (functions-quickstart-python-http-azd
// infra/app/storage-PrivateEndpoint.bicep), as local resources.
param location string
param tags object
param virtualNetworkName string
param subnetName string = 'private-endpoints'
param storageAccountName string
param vaultName string

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' existing = {
  name: virtualNetworkName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

var endpoints = [
  {
    group: 'blob'
    target: storage.id
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    group: 'queue'
    target: storage.id
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    group: 'table'
    target: storage.id
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    group: 'vault'
    target: vault.id
    // keyvaultDns is '.vault.azure.net' (or '.vault.usgovcloudapi.net')
    zone: replace(environment().suffixes.keyvaultDns, '.vault.', 'privatelink.vaultcore.')
  }
]

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for e in endpoints: {
  name: e.zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (e, i) in endpoints: {
  parent: zones[i]
  name: '${virtualNetworkName}-${e.group}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for e in endpoints: {
  name: 'pe-${e.group}-${uniqueString(e.target)}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: '${vnet.id}/subnets/${subnetName}'
    }
    privateLinkServiceConnections: [
      {
        name: e.group
        properties: {
          privateLinkServiceId: e.target
          groupIds: [
            e.group
          ]
        }
      }
    ]
  }
}]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (e, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: e.group
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]
