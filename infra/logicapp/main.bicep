// A sample Logic App (Consumption) that calls Defender Bridge with its managed identity, no key:
// it triggers on high-severity incidents of one tenant (HTTP Webhook on POST /api/subscriptions),
// runs a hunting template through the asynchronous pattern and tags and comments the incident.
// The workflow definition is workflow.json; README "Logic Apps and custom connectors" walks
// through deploying it:
//
//   az deployment group create -g <resource group> -f infra/logicapp/main.bicep \
//     -p bridgeUrl=https://<FUNCTION_APP_HOST> apiClientId=<DEFENDER_CLIENT_ID> \
//        watchedTenantId=<tenant id>
//
// It cannot loop: its own PATCH adds the triage tag before the comment, and both its trigger
// condition and a check on the incident as it is now skip a tagged incident, whatever push
// delivers (docs/logic-apps.md).
//
// Who may call the API is decided by app roles on the Defender Bridge app registration
// (docs/http-auth.md). The workflow's user-assigned identity gets them here through the
// Microsoft Graph Bicep extension (roles.bicep; public cloud only:
// https://learn.microsoft.com/graph/templates/limitations), before the workflow exists, so its
// first subscribe is already authorised. Where that cannot run (Azure Government, or a deployer
// without AppRoleAssignment.ReadWrite.All), deploy with assignAppRoles=false and
// workflowState=Disabled, run infra/entra/setup_app.py --assign <identityPrincipalId output>=...,
// then deploy again with workflowState=Enabled.
targetScope = 'resourceGroup'

@description('Name of the Logic App.')
param name string = 'la-defender-triage'

@description('Region of the Logic App and its identity.')
param location string = resourceGroup().location

@description('The Defender Bridge Function app\'s origin (https://<FUNCTION_APP_HOST>).')
param bridgeUrl string

@minLength(36)
@maxLength(36)
@description('Client id of the Defender Bridge app registration (DEFENDER_CLIENT_ID).')
param apiClientId string

@description('The API\'s Application ID URI (API_APP_ID_URI): the audience of the identity\'s tokens. Empty: api://<apiClientId>.')
param apiAppIdUri string = ''

@minLength(36)
@maxLength(36)
@description('The tenant whose high-severity incidents the workflow triages.')
param watchedTenantId string

@description('The tag the workflow puts on an incident it triaged; a tagged incident never triggers it again.')
param triageTag string = 'bridge-triaged'

@description('App roles the workflow\'s identity gets on the API: subscribe, hunt, read and update incidents, in the watched tenant only. Tenant.<id> must be defined on the app registration (infra/entra/setup_app.py --define-role Tenant.<id>).')
param appRoles array = [
  'Subscriptions.Manage'
  'Hunting.Run'
  'Incidents.Read'
  'Incidents.Write'
  'Tenant.${watchedTenantId}'
]

@description('Assign appRoles with the Microsoft Graph Bicep extension (public cloud; the deployer needs AppRoleAssignment.ReadWrite.All). false: assign them with infra/entra/setup_app.py --assign.')
param assignAppRoles bool = true

@allowed([
  'Enabled'
  'Disabled'
])
@description('Disabled: the workflow does not subscribe yet (deploy it so, assign the roles, then enable it).')
param workflowState string = 'Enabled'

param tags object = {}

var audience = empty(apiAppIdUri) ? 'api://${apiClientId}' : apiAppIdUri

// user-assigned: it exists, and holds its app roles, before the workflow subscribes
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${name}'
  location: location
  tags: tags
}

module roles 'roles.bicep' = if (assignAppRoles) {
  name: '${name}-app-roles'
  params: {
    apiClientId: apiClientId
    principalId: identity.properties.principalId
    appRoles: appRoles
  }
}

resource workflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    state: workflowState
    definition: loadJsonContent('workflow.json')
    parameters: {
      bridgeUrl: {
        value: bridgeUrl
      }
      bridgeAudience: {
        value: audience
      }
      identityId: {
        value: identity.id
      }
      tenantId: {
        value: watchedTenantId
      }
      triageTag: {
        value: triageTag
      }
    }
  }
  dependsOn: [
    roles
  ]
}

output workflowName string = workflow.name
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
