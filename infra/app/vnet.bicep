// Optional network isolation (vnetEnabled): a virtual network with a subnet for the app's
// outbound traffic (Flex Consumption delegates it to Microsoft.App/environments) and one for
// the private endpoints of storage and Key Vault. Same layout as Microsoft's quickstart
// (functions-quickstart-python-http-azd infra/app/vnet.bicep), as local resources.
param name string
param location string
param tags object
param appSubnetName string = 'app'
param privateEndpointSubnetName string = 'private-endpoints'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.0.0.0/16'
      ]
    }
    subnets: [
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: '10.0.1.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
          privateLinkServiceNetworkPolicies: 'Enabled'
        }
      }
      {
        name: appSubnetName
        properties: {
          addressPrefix: '10.0.2.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
          privateLinkServiceNetworkPolicies: 'Enabled'
          // https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

output name string = vnet.name
output appSubnetId string = '${vnet.id}/subnets/${appSubnetName}'
output privateEndpointSubnetId string = '${vnet.id}/subnets/${privateEndpointSubnetName}'
