// App roles on the Defender Bridge API for one principal (the Logic App's managed identity), with
// the Microsoft Graph Bicep extension: an app role assignment on the API's service principal per
// role, each role found by its value among the roles the app registration defines
// (https://learn.microsoft.com/graph/templates/reference/approleassignedto). The same as
// infra/entra/setup_app.py --assign <principal id>=<roles>, which is the way where this cannot
// run: Graph Bicep deploys to the public cloud only, and the deployer needs
// AppRoleAssignment.ReadWrite.All and Application.Read.All.
extension microsoftGraphV1

@description('Client id of the Defender Bridge app registration.')
param apiClientId string

@description('Object id of the principal that gets the roles.')
param principalId string

@description('App role values (each defined on the app registration).')
param appRoles array

resource api 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: apiClientId
}

resource assignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in appRoles: {
    principalId: principalId
    resourceId: api.id
    appRoleId: filter(api.appRoles, r => r.value == role)[0].id
  }
]
