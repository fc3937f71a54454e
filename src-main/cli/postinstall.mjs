console.log('[quadra] postinstall ran');
