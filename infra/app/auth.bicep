// App Service Authentication in front of the HTTP API (deployed only with API_AUTH_MODE=entra):
// a gate that answers 401 before the Functions host runs anything for a request without a valid
// Entra ID token for this API (the health check, the consent callback and the poll link
// excepted). The app still validates every token itself and takes roles and tenants from it,
// so the gate is never the proof (docs/http-auth.md). The functions are anonymous at the host in this mode: the host
// grants its function level only to keys, so a Logic App calling with its managed identity and
// no key would otherwise be refused.
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2
param siteName string
@description('Client id of the app registration whose API callers call.')
param clientId string
@description('Its home tenant: the issuer of the tokens.')
param tenantId string
@description('The Application ID URI: the audience of the tokens.')
param appIdUri string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:checkov reads the v1 authsettings schema (properties.enabled); this authsettingsV2 resource turns authentication on in properties.platform.enabled with requireAuthentication (tests/infra/test_bicep.py asserts it)
  //checkov:skip=CKV_AZURE_63:a check of the site's web config (httpLoggingEnabled) that checkov applies to every sites/config resource; this one is authsettingsV2, and the app logs to Application Insights
  //checkov:skip=CKV_AZURE_65:a check of the site's web config (detailedErrorLoggingEnabled) that checkov applies to every sites/config resource; this one is authsettingsV2
  //checkov:skip=CKV_AZURE_66:a check of the site's web config (requestTracingEnabled) that checkov applies to every sites/config resource; this one is authsettingsV2
  //checkov:skip=CKV_AZURE_80:a .NET version check of the site's web config; this is the authsettingsV2 config of a Python Function app
  //checkov:skip=CKV_AZURE_88:an Azure Files check of the site's web config; this is the authsettingsV2 config, and a Flex Consumption app mounts no file share
  //checkov:skip=CKV_AZURE_222:the HTTP API is called by webhooks and Logic Apps from outside; this gate and the app's own token checks are its protection (see api.bicep)
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // the public routes: they need no token. The poll link carries its own signed
      // capability and takes the job id in its query, so its path is one exact path (an
      // excluded path is matched as written; docs/logic-apps.md)
      excludedPaths: [
        '/api/health'
        '/api/consent/callback'
        '/api/hunting/status'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          // the v2 issuer of the home tenant in the cloud this is deployed to; setup_app.py asks
          // Entra for v2 tokens for the API (requestedAccessTokenVersion 2)
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            appIdUri
            clientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
